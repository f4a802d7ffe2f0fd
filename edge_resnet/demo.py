"""A complete, offline demo dataset and pipeline: scikit-learn's digits as an image folder.

The 1,797 8x8 handwritten digits ship inside scikit-learn, so the demo, the tests and a user on
an air-gapped machine all get the same real data without a download. ``run_demo`` then takes
them through every host stage (finetune, ONNX export with a parity proof, evaluation) into one
output folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
from PIL import Image

from edge_resnet.core import InputError
from edge_resnet.io_utils import atomic_write_json

__all__ = ["DigitsFolders", "DemoResult", "format_summary", "run_demo", "write_digits_folder"]

log = logging.getLogger(__name__)

_MANIFEST = "digits.json"


@dataclass(frozen=True)
class DigitsFolders:
    """Where the digits were written and how many images each split holds per class."""

    train_dir: Path
    test_dir: Path
    counts: Dict[str, Dict[str, int]]  # {"train": {"0": n, ...}, "test": {...}}


def _digit_images(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(N x size x size x 3 uint8 RGB, N labels) upscaled bilinearly from the 8x8 originals."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(small), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(small):
        big = Image.fromarray(img, mode="L").resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(big.convert("RGB"))
    return out, digits.target.astype(np.int64)


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        mask[idx[: int(round(len(idx) * test_fraction))]] = True
    return mask


def _complete(out_dir: Path, params: Dict[str, Any]) -> Optional[DigitsFolders]:
    """The folders already written with these parameters, or None when absent/different."""
    manifest = out_dir / _MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if data.get("params") != params:
        raise InputError(
            f"{out_dir} already holds digits written with {data.get('params')}, not {params}; "
            "choose another output folder")
    for split, per_class in data["counts"].items():
        for cls, n in per_class.items():
            folder = out_dir / split / cls
            if not folder.is_dir() or len(list(folder.glob("*.png"))) != n:
                raise InputError(f"{folder} is incomplete or modified (expected {n} PNGs); "
                                 f"delete {out_dir} and run again")
    return DigitsFolders(out_dir / "train", out_dir / "test", data["counts"])


def write_digits_folder(out_dir: "str | Path", size: int = 32, test_fraction: float = 0.2,
                        seed: int = 0) -> DigitsFolders:
    """Write ``out_dir/{train,test}/<digit>/<index>.png`` (RGB, ``size`` x ``size``).

    Idempotent: a folder already complete with the same parameters is reused. Written into a
    temporary folder first and moved into place, so a crash never leaves half a dataset.
    """
    if size < 8:
        raise InputError(f"digit image size must be at least 8, got {size}")
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    out_dir = Path(out_dir)
    params = {"size": size, "test_fraction": test_fraction, "seed": seed}
    done = _complete(out_dir, params)
    if done is not None:
        return done
    for split in ("train", "test"):
        if (out_dir / split).exists():
            raise InputError(f"{out_dir / split} exists but is not a complete digits folder; "
                             "delete it or choose another output folder")
    images, labels = _digit_images(size)
    test_mask = _stratified_test_mask(labels, test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Dict[str, Dict[str, int]] = {"train": {}, "test": {}}
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=out_dir))
    try:
        for i, (img, label) in enumerate(zip(images, labels)):
            split = "test" if test_mask[i] else "train"
            folder = tmp / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, mode="RGB").save(folder / f"{i:04d}.png")
            counts[split][str(label)] = counts[split].get(str(label), 0) + 1
        for split in ("train", "test"):
            os.replace(tmp / split, out_dir / split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {s: dict(sorted(c.items())) for s, c in counts.items()}
    atomic_write_json(out_dir / _MANIFEST, {"params": params, "counts": counts,
                                            "source": "sklearn.datasets.load_digits"})
    return DigitsFolders(out_dir / "train", out_dir / "test", counts)


# --------------------------------------------------------------------------- the whole demo

@dataclass
class DemoResult:
    """Every artifact the demo wrote and the numbers it measured (accuracies in percent, as
    evaluation reports them)."""

    out_dir: Path
    checkpoint: Path
    onnx: Path
    onnx_fused: Path
    report_json: Path
    report_md: Path
    init: str
    val_top1_pct: float
    torch_test_top1_pct: Optional[float]
    onnx_test_top1_pct: Optional[float]
    fused_test_top1_pct: Optional[float]
    parity_max_abs_diff: float
    seconds: Dict[str, float]
    calibration_dir: Optional[Path] = None
    precision_top1_pct: Dict[str, Optional[float]] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def run_demo(out_dir: "str | Path", *, epochs: int = 8, batch_size: int = 32, lr: float = 2e-3,
             seed: int = 0, init: str = "scratch", threads: int = 0,
             calibrate: bool = True, progress: bool = True) -> DemoResult:
    """Digits -> fine-tuned ResNet50 (32x32) -> proven FP32 ONNX (+ fused uint8 BGR graph)
    -> FP16 and INT8 (all four calibration methods) -> one evaluation report comparing every
    precision with the FP32 reference, all under ``out_dir``.

    ``init="scratch"`` by default so the demo does the same thing on every machine; pass
    ``"auto"`` to start from cached ImageNet weights when present. ``threads`` is torch's
    training thread count (0: all cores; 1 is faster on a machine busy with other work).
    """
    from edge_resnet.calibration import CalibrationOptions
    from edge_resnet.calibration import calibrate as run_calibration
    from edge_resnet.evaluation import evaluate, write_report
    from edge_resnet.export.finetune import finetune
    from edge_resnet.export.models import load_model
    from edge_resnet.export.parity import check_fused_vs_unfused, export_verified
    from edge_resnet.images import ImageFolder

    out = Path(out_dir)
    seconds: Dict[str, float] = {}
    clock = time.perf_counter()
    digits = write_digits_folder(out / "digits", size=32, seed=seed)
    seconds["data"], clock = time.perf_counter() - clock, time.perf_counter()
    trained = finetune(digits.train_dir, out / "digits_resnet50.pt", resolution=32, resize=None,
                       epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, init=init,
                       test_dir=digits.test_dir, threads=threads, progress=progress)
    seconds["finetune"], clock = time.perf_counter() - clock, time.perf_counter()
    loaded = load_model(str(trained.checkpoint))
    check = ImageFolder(digits.test_dir, labeled=False)
    images = [img for _, img in check.iter_images(check.sample(64, seed))]
    exported, parity = export_verified(loaded.model, loaded.spec, out / "digits_fp32.onnx",
                                       images, weights_sha256=loaded.weights_sha256,
                                       source=str(trained.checkpoint))
    fused = load_model(str(trained.checkpoint))  # export folds BatchNorm: use a fresh copy
    fused_result, _ = export_verified(fused.model, fused.spec, out / "digits_fp32_bgr_u8.onnx",
                                      None, fuse_preprocessing=True, input_color_order="BGR",
                                      weights_sha256=fused.weights_sha256,
                                      source=str(trained.checkpoint))
    check_fused_vs_unfused(fused_result.path, exported.path, images)
    seconds["export"], clock = time.perf_counter() - clock, time.perf_counter()
    candidates: Dict[str, Path] = {"fp32-fused-bgr-uint8": fused_result.path}
    calibration_dir = None
    if calibrate:
        calibration_dir = out / "calibration"
        cal = run_calibration(exported.path, digits.train_dir, calibration_dir, CalibrationOptions(
            methods=("all",), num_images=256, seed=seed, fp16=True, progress=progress))
        if cal.fp16_path is not None:
            candidates["fp16"] = cal.fp16_path
        candidates.update({f"int8-{m}": a.qdq_path for m, a in sorted(cal.methods.items())})
        seconds["calibrate"], clock = time.perf_counter() - clock, time.perf_counter()
    # INT8 as written (Q/DQ in float): the arithmetic TensorRT reproduces, not this CPU's kernels
    report = evaluate(exported.path, candidates, digits.test_dir, progress=progress,
                      reference_name="fp32", backend_options={"exact_qdq": True})
    json_path, md_path = write_report(report, out / "eval")
    seconds["eval"] = time.perf_counter() - clock
    result = DemoResult(out, trained.checkpoint, exported.path, fused_result.path, json_path,
                        md_path, trained.init, 100.0 * trained.final_val_accuracy,
                        None if trained.test_accuracy is None else 100.0 * trained.test_accuracy,
                        report.reference.top1, report.candidates[0].top1,
                        float(parity.max_abs_diff) if parity is not None else float("nan"),
                        seconds, calibration_dir,
                        {c.name: c.top1 for c in [report.reference, *report.candidates]})
    atomic_write_json(out / "demo-summary.json", result.to_dict())
    return result


def format_summary(result: DemoResult) -> str:
    """A few lines for the terminal: where everything is and how accurate each stage is."""
    def pct(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{value:.2f} %"

    t = result.seconds
    return "\n".join([
        f"demo written to {result.out_dir} ({sum(t.values()):.0f}s: "
        + ", ".join(f"{stage} {secs:.0f}s" for stage, secs in t.items()) + ")",
        f"  checkpoint  {result.checkpoint}  (init={result.init}, "
        f"val {pct(result.val_top1_pct)}, test {pct(result.torch_test_top1_pct)} in PyTorch)",
        f"  onnx fp32   {result.onnx}  (test {pct(result.onnx_test_top1_pct)}, parity max "
        f"|diff| {result.parity_max_abs_diff:.2e})",
        f"  onnx fused  {result.onnx_fused}  (uint8 BGR frames in, test "
        f"{pct(result.fused_test_top1_pct)})",
        *([f"  calibrated  {result.calibration_dir}  (QDQ INT8 per method, TensorRT caches, "
           "FP16)"] if result.calibration_dir else []),
        "  test top-1  " + ", ".join(f"{name} {pct(value)}"
                                     for name, value in result.precision_top1_pct.items()),
        f"  report      {result.report_md}",
    ])
