"""``calibrate``: statistics → ranges per method → QDQ INT8 + TensorRT cache (+ FP16, + mixed).

The range method is chosen by measurement unless the caller names one: ``auto`` (the default)
scores every method on calibration images held out of the statistics
(:mod:`edge_resnet.calibration.scoring`) and writes the winner's artifacts; ``all`` writes every
method's artifacts and marks the winner; a method name writes that method's (and still reports
its score). The accuracy-aware mode starts from the chosen method.

Every stage writes its artifact atomically and is skipped when that artifact already exists for
the same model and settings, so an interrupted run resumes where it stopped. Nothing is written
before the model, the options and the data have been validated.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edge_resnet.calibration.graph import resnet_layout
from edge_resnet.calibration.methods import compute_ranges, method_names
from edge_resnet.calibration.options import AccuracyOptions, CalibrationOptions, Fp16Options
from edge_resnet.calibration.scoring import (HOLDOUT_EVERY, HoldoutSplit, MethodScore,
                                             choose_method, score_methods)
from edge_resnet.calibration.stats import (ActivationStats, collect_stats, load_onnx,
                                           model_fingerprint)
from edge_resnet.core import InputError, ModelSpec
from edge_resnet.io_utils import atomic_write_json

__all__ = ["CalibrationOptions", "CalibrationResult", "MethodArtifacts", "calibrate"]

log = logging.getLogger(__name__)

_FP16_KEY = "edge_resnet.fp16_of"  # [fp32 graph fingerprint, keep_io_types]: resume check


@dataclass
class MethodArtifacts:
    method: str
    qdq_path: Path
    ranges_path: Path
    cache_path: Path
    reused: bool = False
    top1: Optional[float] = None


@dataclass
class CalibrationResult:
    out_dir: Path
    stats_path: Path
    stats_reused: bool
    images_used: int
    skipped: int
    stats_seconds: float
    methods: Dict[str, MethodArtifacts] = field(default_factory=dict)
    fp16_path: Optional[Path] = None
    fp32_top1: Optional[float] = None
    fp16_top1: Optional[float] = None
    best_method: Optional[str] = None
    chosen_method: Optional[str] = None
    method_scores: Dict[str, MethodScore] = field(default_factory=dict)
    holdout_images: int = 0
    mixed_path: Optional[Path] = None
    mixed: Optional[Any] = None
    summary_path: Optional[Path] = None

    def to_dict(self) -> Dict[str, Any]:
        data = {k: v for k, v in asdict(self).items()
                if k not in ("methods", "mixed", "method_scores")}
        data["methods"] = {k: asdict(v) for k, v in self.methods.items()}
        data["method_scores"] = {k: asdict(v) for k, v in self.method_scores.items()}
        data["mixed"] = asdict(self.mixed) if self.mixed is not None else None
        return json.loads(json.dumps(data, default=str))


def _spec_of(model: Any, spec: Optional[ModelSpec]) -> ModelSpec:
    if spec is not None:
        return spec
    return ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})


def _stats(model: Any, data: Optional[Union[str, Path]], spec: ModelSpec, path: Path,
           opts: CalibrationOptions, fingerprint: str
           ) -> Tuple[ActivationStats, bool, int, List[np.ndarray]]:
    """Statistics (computed, or reused from ``path``) and the held-out scoring batches."""
    from edge_resnet.calibration.readers import open_reader

    reader = None if data is None else open_reader(data, spec, opts.reader)
    split = HoldoutSplit(reader if reader is not None else [], HOLDOUT_EVERY)
    if path.is_file():
        stats = ActivationStats.load(path, fingerprint=fingerprint)
        log.info("reusing statistics %s (%d images)", path, stats.num_images)
        if reader is not None:
            for _ in split:  # decode again for the held-out images; statistics are reused
                pass
            if stats.extra.get("holdout_every") != str(HOLDOUT_EVERY):
                log.warning("statistics %s were made without a hold-out: the range methods are "
                            "scored on images the statistics have seen", path)
        return stats, True, stats.skipped, split.held_batches(opts.reader.batch_size)
    if reader is None:
        raise InputError(f"no calibration data given and no statistics file at {path}")
    expected = reader.expected_images()
    stats = collect_stats(model, split, num_bins=opts.num_bins, threads=opts.threads,
                          total=expected - expected // HOLDOUT_EVERY, progress=opts.progress,
                          source=str(data))
    if opts.methods[0] == "auto" and not split.held_images:
        raise InputError(f"method auto holds out every {HOLDOUT_EVERY}th calibration image to "
                         f"score the range methods, and {data} gave fewer than {HOLDOUT_EVERY}; "
                         "give more images or name a method")
    stats.skipped = reader.skips.count
    stats.extra["holdout_every"] = str(HOLDOUT_EVERY)
    stats.save(path)
    return stats, False, reader.skips.count, split.held_batches(opts.reader.batch_size)


_QDQ_PLACEMENT = 2  # bumped when build_qdq places Q/DQ differently: old artifacts are rebuilt


def _artifacts(out_dir: Path, stem: str, method: str, opts: CalibrationOptions
               ) -> MethodArtifacts:
    from edge_resnet.calibration.trt_cache import parse_trt_version

    version = parse_trt_version(opts.cache.trt_version)
    return MethodArtifacts(
        method, out_dir / f"{stem}.int8.{method}.onnx", out_dir / f"{stem}.ranges.{method}.json",
        out_dir / f"{stem}.{method}.trt{version}.{opts.cache.calibrator}.cache")


def _build_method(model: Any, stats: ActivationStats, method: str, opts: CalibrationOptions
                  ) -> Tuple[Dict[str, float], Any, float]:
    """(ranges, in-memory QDQ model, seconds spent on the ranges) of one method."""
    from edge_resnet.calibration.qdq import QdqOptions, build_qdq

    started = time.perf_counter()
    ranges = compute_ranges(stats, method, opts.ranges)
    seconds = time.perf_counter() - started
    qdq = build_qdq(model, ranges, QdqOptions(quantize_fc=opts.quantize_fc, method=method))
    return ranges, qdq, seconds


def _method_stage(built: Tuple[Dict[str, float], Any, float], stats: ActivationStats,
                  art: MethodArtifacts, opts: CalibrationOptions) -> MethodArtifacts:
    """Write one method's QDQ model, cache and ranges JSON (or reuse identical ones)."""
    from edge_resnet.calibration.qdq import save_model
    from edge_resnet.calibration.trt_cache import write_cache

    key = {"model": stats.fingerprint, "method": art.method, "images": stats.num_images,
           "options": asdict(opts.ranges), "quantize_fc": opts.quantize_fc,
           "calibrator": opts.cache.calibrator, "placement": _QDQ_PLACEMENT}
    if art.qdq_path.is_file() and art.cache_path.is_file() and art.ranges_path.is_file():
        if json.loads(art.ranges_path.read_text()).get("key") == key:
            art.reused = True
            return art
    ranges, qdq, seconds = built
    save_model(qdq, art.qdq_path)
    write_cache(art.cache_path, ranges, trt_version=opts.cache.trt_version,
                names=list(stats.tensors), calibrator=opts.cache.calibrator)
    atomic_write_json(art.ranges_path, {"key": key, "method": art.method, "amax": ranges,
                                        "range_seconds": seconds,
                                        "scale": "amax / 127, symmetric int8"})
    return art


def _fp16_stage(model: Any, path: Path, opts: Fp16Options, batch: np.ndarray) -> Path:
    from edge_resnet.calibration.fp16 import check_fp16, convert_fp16
    from edge_resnet.calibration.qdq import save_model, set_metadata

    fingerprint = model_fingerprint(model)
    if path.is_file():
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
                .metadata_props}
        if meta.get(_FP16_KEY) == json.dumps([fingerprint, opts.keep_io_types]):
            return path
    half = convert_fp16(model, keep_io_types=opts.keep_io_types)
    set_metadata(half, {_FP16_KEY: [fingerprint, opts.keep_io_types]})
    check = check_fp16(model, half, batch)
    log.info("FP16 check: max |logit diff| %.4f, top-1 agreement %.1f%% on %d images",
             check.max_abs_diff, 100 * check.top1_agreement, check.images)
    return save_model(half, path)


def _eval_batches(accuracy: AccuracyOptions, spec: ModelSpec, seed: int
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
    """The held-out labeled images, decoded and preprocessed once for every model."""
    from edge_resnet.calibration.readers import records_reader
    from edge_resnet.core import DataError
    from edge_resnet.images import ImageFolder

    folder = accuracy.data
    images = ImageFolder(folder, labels=spec.labels, labeled=True, label_ids=spec.label_ids)
    records = images.sample(accuracy.num_images, seed)
    batches, labels = [], []
    for batch, y in records_reader(records, spec, batch_size=64):
        batches.append(batch)
        labels.append(y)
    if not batches:
        raise DataError(f"evaluation folder {folder} has no readable image")
    return batches, np.concatenate(labels)


def _evaluate_all(model: Any, result: CalibrationResult, batches: Sequence[np.ndarray],
                  labels: np.ndarray, threads: int) -> None:
    from edge_resnet.calibration.mixed import model_logits
    from edge_resnet.evaluation.metrics import topk_accuracy

    def top1(graph: Any) -> float:
        return 100.0 * topk_accuracy(model_logits(graph, batches, threads), labels, 1)

    result.fp32_top1 = top1(model)
    for art in result.methods.values():
        art.top1 = top1(load_onnx(art.qdq_path))
    if result.fp16_path is not None:
        result.fp16_top1 = top1(load_onnx(result.fp16_path))
    result.best_method = max(result.methods.values(), key=lambda a: a.top1 or 0.0).method


def _mixed_stage(model: Any, result: CalibrationResult, batches: Sequence[np.ndarray],
                 labels: np.ndarray, stem: str, opts: CalibrationOptions) -> None:
    from edge_resnet.calibration.mixed import search_mixed
    from edge_resnet.calibration.qdq import save_model

    start = result.chosen_method or result.best_method
    accuracy = opts.accuracy
    if start is None or accuracy is None or accuracy.max_drop is None:
        raise InputError("accuracy-aware mode needs max_drop and a range method to start from")
    qdq = load_onnx(result.methods[start].qdq_path)
    mixed_model, mixed = search_mixed(model, qdq, batches, labels, accuracy.max_drop,
                                      sensitivity_images=accuracy.sensitivity_images,
                                      max_float_layers=accuracy.max_float_layers,
                                      threads=opts.threads, progress=opts.progress)
    result.mixed = mixed
    result.mixed_path = save_model(mixed_model, result.out_dir / f"{stem}.int8.mixed.onnx")


def calibrate(model_onnx: Union[str, Path], data: Optional[Union[str, Path]],
              out_dir: Union[str, Path], options: Optional[CalibrationOptions] = None, *,
              spec: Optional[ModelSpec] = None) -> CalibrationResult:
    """Calibrate ``model_onnx`` (an FP32 ResNet ONNX) on ``data`` into ``out_dir``.

    ``data``: image folder, video file or list file (may be None when the statistics file
    already exists and a method is named). ``options``: :class:`CalibrationOptions` (defaults:
    ``--method auto`` on 512 images, a TensorRT 8.5.2 cache for EntropyCalibration2).
    Raises :class:`GateError` when ``accuracy.max_drop`` cannot be met (other artifacts stay).
    """
    opts = options if options is not None else CalibrationOptions()
    if opts.methods[0] == "auto" and data is None:
        raise InputError("method auto scores the range methods on held-out calibration images: "
                         "give the calibration data (statistics are still reused) or name a "
                         f"method ({', '.join(method_names())})")
    model = load_onnx(model_onnx)
    resnet_layout(model)
    spec = _spec_of(model, spec)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file")
    fingerprint = model_fingerprint(model)
    if opts.stats_path is not None and Path(opts.stats_path).is_file():
        ActivationStats.load(opts.stats_path, fingerprint=fingerprint)  # refuse before writing
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(model, data, out, spec, fingerprint, Path(model_onnx).stem, opts)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind for a run that produced nothing
        raise


def _run(model: Any, data: Optional[Union[str, Path]], out: Path, spec: ModelSpec,
         fingerprint: str, stem: str, opts: CalibrationOptions) -> CalibrationResult:
    batches: List[np.ndarray] = []
    labels = np.zeros(0, dtype=np.int64)
    if opts.accuracy is not None:  # validated (and decoded once) before anything is written
        batches, labels = _eval_batches(opts.accuracy, spec, opts.reader.seed)
    stats_path = Path(opts.stats_path) if opts.stats_path else out / f"{stem}.stats.npz"
    stats, reused, skipped, held = _stats(model, data, spec, stats_path, opts, fingerprint)
    result = CalibrationResult(out, stats_path, reused, stats.num_images, skipped, stats.seconds)
    result.holdout_images = sum(len(b) for b in held)
    built = {m: _build_method(model, stats, m, opts) for m in opts.scored_methods}
    if held:
        result.method_scores = score_methods(model, {m: b[1] for m, b in built.items()}, held,
                                             opts.threads)
        result.chosen_method = choose_method(result.method_scores)
        for score in result.method_scores.values():
            log.info("method %-10s agreement with FP32 %.2f %%, KL %.5f (%d held-out images)",
                     score.method, score.agreement, score.kl, score.images)
    elif len(built) == 1:
        result.chosen_method = next(iter(built))
    for method in opts.written_methods(result.chosen_method or ""):
        result.methods[method] = _method_stage(built[method], stats,
                                               _artifacts(out, stem, method, opts), opts)
    if opts.fp16 is not None:
        check_batch = (batches or held or [_check_batch(data, spec, opts)])[0]
        result.fp16_path = _fp16_stage(model, out / f"{stem}.fp16.onnx", opts.fp16, check_batch)
    if batches:
        _evaluate_all(model, result, batches, labels, opts.threads)
    summary = out / f"{stem}.calibration.json"
    result.summary_path = summary
    if opts.accuracy is not None and opts.accuracy.max_drop is not None:
        try:
            _mixed_stage(model, result, batches, labels, stem, opts)
        finally:
            atomic_write_json(summary, result.to_dict())
    else:
        atomic_write_json(summary, result.to_dict())
    return result


def _check_batch(data: Optional[Union[str, Path]], spec: ModelSpec,
                 opts: CalibrationOptions) -> np.ndarray:
    """A batch of calibration images for the FP16 check (random inputs if there is no data)."""
    from dataclasses import replace

    from edge_resnet.calibration.readers import open_reader

    if data is not None:
        one_batch = replace(opts.reader, num_images=opts.reader.batch_size)
        for batch in open_reader(data, spec, one_batch):
            return batch
    rng = np.random.default_rng(opts.reader.seed)
    if spec.fused_preprocessing:
        return rng.integers(0, 256, size=spec.input_shape(4), dtype=np.uint8)
    return rng.standard_normal(spec.input_shape(4)).astype(np.float32)

