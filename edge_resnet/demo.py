"""The offline demo: scikit-learn's digits (:mod:`edge_resnet.datasets.digits`) through every
host stage (finetune, ONNX export with a parity proof, calibration, evaluation) into one output
folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from edge_resnet.datasets.digits import write_digits_folder
from edge_resnet.io_utils import atomic_write_json

__all__ = ["DemoResult", "format_summary", "run_demo"]

log = logging.getLogger(__name__)

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
    from edge_resnet.calibration.options import Fp16Options, ReaderOptions
    from edge_resnet.calibration import calibrate as run_calibration
    from edge_resnet.evaluation import evaluate, write_report
    from edge_resnet.training.finetune import finetune
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
            methods=("all",), reader=ReaderOptions(num_images=256, seed=seed),
            fp16=Fp16Options(), progress=progress))
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
