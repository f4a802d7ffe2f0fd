"""Run a reference model and its candidates over an image folder and compare them image by image.

Each image is decoded once (by :func:`edge_resnet.images.decoded_chunks`, the next chunk
ahead in a thread) and the same pixels go to every model, chunk by chunk, so the
comparison is aligned per sample and memory stays bounded (one chunk of images plus N x classes
logits per model). Each model gets its own batch from
:func:`edge_resnet.preprocessing.preprocess_batch`, so float NCHW graphs and fused uint8 graphs
can be compared with each other. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edge_resnet.backends.base import Backend
from edge_resnet.backends.options import BackendOptions
from edge_resnet.backends.reference import AUTO, ModelRef, open_model, parse_model_ref
from edge_resnet.core import DataError, InputError, ModelError, ModelSpec
from edge_resnet.evaluation.gates import apply_gates, check_gates
from edge_resnet.evaluation.metrics import per_class_accuracy, topk_correct
from edge_resnet.evaluation.report import EvalReport, ModelResult
from edge_resnet.evaluation.stats import compare
from edge_resnet.images import ImageFolder, ImageRecord, SkipCounter, chunked, decoded_chunks
from edge_resnet.preprocessing import preprocess_batch

__all__ = ["ModelLike", "PredictResult", "check_same_labels", "evaluate", "named_models",
           "predict"]

ModelLike = Union[Backend, ModelRef, str, Path]
ImageSource = Union[ImageFolder, Sequence[ImageRecord], Sequence[Any]]


@dataclass
class PredictResult:
    """Logits (N x classes, float32) of the readable images, in input order.

    ``labels`` is None when the images carry no labels; ``skipped`` maps unreadable paths to
    the reason. ``paths`` are file paths, or ``<image i>`` for in-memory images.
    """

    logits: np.ndarray
    labels: Optional[np.ndarray]
    paths: List[str]
    skipped: Dict[str, str] = field(default_factory=dict)


@dataclass
class _Outputs:
    """What one pass over the data collected for several models."""

    logits: List[np.ndarray]
    labels: Optional[np.ndarray]
    paths: List[str]
    skipped: Dict[str, str]
    infer_seconds: List[float]


def _as_records(source: ImageSource) -> Tuple[List[Any], bool]:
    """(items, items_are_records) for a folder, a record list or in-memory images."""
    if isinstance(source, ImageFolder):
        return list(source.records), True
    items = list(source)
    if all(isinstance(x, ImageRecord) for x in items):
        return items, True
    if any(isinstance(x, ImageRecord) for x in items):
        raise InputError("mix of ImageRecords and images; pass one kind")
    return items, False


def _decoded_chunks(items: Sequence[Any], are_records: bool, size: int, skips: SkipCounter
                    ) -> Iterator[Tuple[List[Any], List[Optional[int]], List[str]]]:
    """Yield (images, labels, paths) chunks of ``size`` readable images, the next one decoded
    ahead in a thread while the models run; in-memory images pass through unchanged."""
    if are_records:
        for chunk in decoded_chunks(items, size, skips, prefetch=True):
            yield ([image for _, image in chunk], [record.label for record, _ in chunk],
                   [str(record.path) for record, _ in chunk])
        return
    for number, images in enumerate(chunked(items, size)):
        first = number * size
        yield images, [None] * len(images), [f"<image {first + i}>" for i in range(len(images))]


def _infer(backend: Backend, images: Sequence[Any]) -> Tuple[np.ndarray, float]:
    batch = preprocess_batch(images, backend.spec)
    start = time.perf_counter()
    logits = np.asarray(backend.infer(batch).logits)
    seconds = time.perf_counter() - start
    expected = (len(images), backend.spec.num_classes)
    if logits.shape != expected:
        raise ModelError(
            f"{backend.info.model_path}: returned logits of shape {logits.shape} for a batch of "
            f"{len(images)}, expected {expected} (one score per label in the model metadata)")
    return logits.astype(np.float32, copy=False), seconds


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm  # a core dependency; imported late to keep `import` light

    return tqdm(total=total, unit="img", desc="eval", disable=None if enabled else True,
                leave=False)


def _run_models(backends: Sequence[Backend], source: ImageSource, batch_size: int,
                progress: bool) -> _Outputs:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    items, are_records = _as_records(source)
    skips = SkipCounter()
    chunks: List[List[np.ndarray]] = [[] for _ in backends]
    seconds = [0.0 for _ in backends]
    labels: List[Optional[int]] = []
    paths: List[str] = []
    with contextlib.closing(_progress(len(items), progress)) as bar:
        for images, chunk_labels, chunk_paths in _decoded_chunks(items, are_records,
                                                                 batch_size, skips):
            for i, backend in enumerate(backends):
                logits, spent = _infer(backend, images)
                chunks[i].append(logits)
                seconds[i] += spent
            labels.extend(chunk_labels)
            paths.extend(chunk_paths)
            bar.update(len(images))
        bar.update(len(items) - bar.n)
    known = [x for x in labels if x is not None]
    if known and len(known) != len(labels):
        raise InputError("some images have labels and some do not; use one kind of folder")
    num_classes = [b.spec.num_classes for b in backends]
    return _Outputs(
        logits=[np.concatenate(c) if c else np.zeros((0, n), np.float32)
                for c, n in zip(chunks, num_classes)],
        labels=np.asarray(known, dtype=np.int64) if known else None,
        paths=paths, skipped=dict(skips.skipped), infer_seconds=seconds)


def predict(backend: Backend, images_or_records: ImageSource, batch_size: int = 32,
            progress: bool = False) -> PredictResult:
    """Logits of ``backend`` for an ImageFolder, a list of ImageRecords or in-memory images
    (uint8 HxWx3 RGB arrays or PIL images). Unreadable files are skipped and listed."""
    out = _run_models([backend], images_or_records, batch_size, progress)
    return PredictResult(logits=out.logits[0], labels=out.labels, paths=out.paths,
                         skipped=out.skipped)


def check_same_labels(reference: ModelSpec, candidate: ModelSpec, name: str) -> None:
    """Raise :class:`ModelError` naming how ``candidate``'s labels differ from the reference's."""
    ref, cand = reference.labels, candidate.labels
    if ref == cand:
        return
    missing = [x for x in ref if x not in set(cand)]
    extra = [x for x in cand if x not in set(ref)]
    if missing or extra:
        detail = f"missing {missing[:5]}, extra {extra[:5]}"
    elif len(ref) != len(cand):
        detail = f"{len(cand)} labels instead of {len(ref)}"
    else:
        first = next(i for i, (a, b) in enumerate(zip(ref, cand)) if a != b)
        detail = f"same names in another order (index {first}: {cand[first]!r} vs {ref[first]!r})"
    raise ModelError(
        f"candidate {name!r} has different class labels than the reference: {detail}; "
        "compare models exported from the same checkpoint")


def named_models(candidates: Union[Mapping[str, ModelLike], Sequence[ModelLike]]
           ) -> List[Tuple[str, ModelLike]]:
    if isinstance(candidates, Mapping):
        return [(str(k), v) for k, v in candidates.items()]
    named: List[Tuple[str, ModelLike]] = []
    taken: Dict[str, int] = {}
    for model in candidates:
        base = _default_name(model)
        taken[base] = taken.get(base, 0) + 1
        named.append((base if taken[base] == 1 else f"{base}-{taken[base]}", model))
    return named


def _default_name(model: ModelLike) -> str:
    if isinstance(model, (str, Path)):
        return Path(parse_model_ref(model).path).stem
    if isinstance(model, ModelRef):
        return Path(model.path).stem
    return Path(model.info.model_path).stem or model.info.name


def _open(model: ModelLike, backend: str, options: Mapping[str, Any],
          stack: contextlib.ExitStack) -> Backend:
    """A Backend as given, or the model reference opened (``backend:path`` strings parsed;
    a plain path gets ``backend``) and closed again with ``stack``."""
    if isinstance(model, (str, Path, ModelRef)):
        if isinstance(model, ModelRef):
            own = model.options  # typed options are the model's own; settings merge
            ref = ModelRef(model.path, model.backend, own if isinstance(own, BackendOptions)
                           else {**options, **(own or {})})
        else:
            ref = parse_model_ref(model, backend, options)
        opened = open_model(ref)
        stack.callback(opened.close)
        return opened
    if not hasattr(model, "infer") or not hasattr(model, "spec"):
        raise InputError(f"expected a model path or a Backend, got {type(model).__name__}")
    return model


def _result(name: str, backend: Backend, seconds: float) -> ModelResult:
    info = backend.info
    reason = str(info.details.get("backend_choice", "given as a Backend"))
    return ModelResult(name=name, model_path=info.model_path, backend=info.name,
                       precision=info.precision, device=info.device, infer_seconds=seconds,
                       backend_reason=reason)


def _check_exact_qdq(options: Mapping[str, Any], opened: Sequence[Backend]) -> None:
    """``exact_qdq`` is an ONNX Runtime option: refuse it when no model runs there (it would
    change nothing, silently)."""
    if options.get("exact_qdq") and not any(b.info.name == "onnxruntime" for b in opened):
        raise InputError("exact_qdq is an onnxruntime backend option and no model runs on "
                         "onnxruntime here; drop it or run a model as onnxruntime:PATH")


def _fill_accuracy(result: ModelResult, logits: np.ndarray, labels: np.ndarray) -> None:
    n = len(labels)
    result.top1_correct = int(topk_correct(logits, labels, 1).sum())
    result.top1 = 100.0 * result.top1_correct / n
    if logits.shape[1] > 5:  # top-5 of five or fewer classes is always 100 %: not reported
        result.top5_correct = int(topk_correct(logits, labels, 5).sum())
        result.top5 = 100.0 * result.top5_correct / n
    result.per_class_correct = per_class_accuracy(logits, labels, logits.shape[1])[0].tolist()


def _validate(batch_size: int, num_images: Optional[int], max_drop: Optional[float],
              threads: int) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if num_images is not None and num_images < 1:
        raise InputError(f"num_images must be positive (or None for all), got {num_images}")
    if max_drop is not None and not max_drop >= 0:
        raise InputError(f"max_drop must be >= 0 percentage points, got {max_drop}")
    if threads < 0:
        raise InputError(f"threads must be >= 0, got {threads}")


def evaluate(reference: ModelLike,
             candidates: Union[Mapping[str, ModelLike], Sequence[ModelLike]],
             data_dir: "str | Path", *, batch_size: int = 32, num_images: Optional[int] = None,
             seed: int = 0, backend: str = AUTO, threads: int = 0,
             max_drop: Optional[float] = None, max_drop_upper: Optional[float] = None,
             min_agreement: Optional[float] = None, progress: bool = True,
             labeled: Optional[bool] = None, reference_name: Optional[str] = None,
             backend_options: Optional[Mapping[str, Any]] = None,
             labels_file: "Optional[str | Path]" = None) -> EvalReport:
    """Compare every candidate with the FP32 reference on ``data_dir``.

    Models are Backends, :class:`~edge_resnet.backends.reference.ModelRef` s or model paths;
    a path may name its backend (``"tensorrt:model.int8.engine"``), otherwise it is opened with
    ``backend`` (``auto``: :func:`~edge_resnet.backends.reference.choose_backend`) and
    ``threads``; opened models are closed again. Each model's backend and the reason it was
    chosen go into the report. Labeled data gives top-1/top-5, drops and per-class accuracy: one subfolder per
    class, named like the model's labels or like its class IDs (ImageNet's synset folders
    ``n01440764/`` for an ImageNet export), or a flat folder with a ``labels_file`` such as
    MLPerf's ``val_map.txt`` (``ILSVRC2012_val_00000001.JPEG 65``; see
    :func:`edge_resnet.images.read_label_map`). An unlabeled folder gives agreement statistics
    only (``labeled`` forces either). ``backend_options`` go to ``load_backend`` besides
    ``threads`` (e.g. ``{"device": "GPU"}`` for OpenVINO; ``exact_qdq`` reaches the ONNX Runtime
    models only). ``num_images`` takes a
    deterministic random subset (``seed``). The gates ``max_drop`` (points),
    ``max_drop_upper`` (points, upper end of the drop's 95 % bootstrap interval, labeled only)
    and ``min_agreement`` (percent) set ``report.gate_passed`` (see ``gates.apply_gates``);
    the report is returned either way and the caller decides what a breach means.
    """
    _validate(batch_size, num_images, max_drop, threads)
    named = named_models(candidates)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        options = {"threads": threads, **(backend_options or {})}
        ref = _open(reference, backend, options, stack)
        cands = [(name, _open(model, backend, options, stack)) for name, model in named]
        _check_exact_qdq(options, [ref] + [c for _, c in cands])
        for name, cand in cands:
            check_same_labels(ref.spec, cand.spec, name)
        folder = ImageFolder(data_dir, labels=ref.spec.labels, labeled=labeled,
                             label_ids=ref.spec.label_ids, labels_file=labels_file)
        check_gates(folder.labeled, max_drop, max_drop_upper, min_agreement)
        records = folder.sample(num_images, seed)
        out = _run_models([ref] + [c for _, c in cands], records, batch_size, progress)
        if not out.paths:
            example = next(iter(out.skipped.items()), ("", ""))
            raise DataError(
                f"{data_dir}: none of the {len(records)} files is a readable image "
                f"(e.g. {example[1]}); point eval at a folder of images")
        report = _build_report(folder, records, out, ref, cands, reference_name)
    report.seconds = time.perf_counter() - start
    report.batch_size, report.num_images, report.seed = batch_size, num_images, seed
    return apply_gates(report, max_drop=max_drop, max_drop_upper=max_drop_upper,
                       min_agreement=min_agreement)


def _build_report(folder: ImageFolder, records: Sequence[ImageRecord], out: _Outputs,
                  ref: Backend, cands: Sequence[Tuple[str, Backend]],
                  reference_name: Optional[str]) -> EvalReport:
    ref_result = _result(reference_name or _default_name(ref), ref, out.infer_seconds[0])
    results = [_result(name, c, s) for (name, c), s in zip(cands, out.infer_seconds[1:])]
    labels = out.labels
    if labels is not None:
        _fill_accuracy(ref_result, out.logits[0], labels)
    for result, logits in zip(results, out.logits[1:]):
        comparison = compare(out.logits[0], logits, labels)
        result.agreement, result.paired = comparison.agreement, comparison.top1
        result.logit_diff = comparison.logit_diff
        if labels is not None:
            _fill_accuracy(result, logits, labels)
            n = len(labels)
            result.drop_top1 = 100.0 * ((ref_result.top1_correct or 0)
                                        - (result.top1_correct or 0)) / n
            if ref_result.top5_correct is not None and result.top5_correct is not None:
                result.drop_top5 = 100.0 * (ref_result.top5_correct - result.top5_correct) / n
    return EvalReport(
        data_dir=str(folder.root), labeled=labels is not None, labels=tuple(ref.spec.labels),
        files_considered=len(records), images_evaluated=len(out.paths), skipped=out.skipped,
        reference=ref_result, candidates=results,
        class_counts=(np.bincount(labels, minlength=ref.spec.num_classes).tolist()
                      if labels is not None else None))
