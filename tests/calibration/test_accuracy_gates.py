"""Accuracy-drop gates on the digits ResNet50 (held-out digits/test, ONNX Runtime CPU).

FP16 must stay within 0.1 top-1 points of FP32 and the best INT8 method within 0.5 points. The
numbers come from the evaluation stage's ``evaluate`` on the written files (what
``edge-resnet eval --exact-qdq`` runs: Q/DQ as written, the arithmetic TensorRT reproduces,
not this CPU's INT8 kernels) and are printed so the closing note can quote them.
"""

from __future__ import annotations

from typing import Any

from edge_resnet.evaluation.evaluate import evaluate


def test_fp16_and_best_int8_meet_their_drop_budgets(calibrated: Any, digits_onnx: Any,
                                                    digits_dirs: Any) -> None:
    candidates = {"fp16": calibrated.fp16_path}
    candidates.update({f"int8-{m}": a.qdq_path for m, a in calibrated.methods.items()})
    report = evaluate(digits_onnx, candidates, digits_dirs.test_dir, progress=False,
                      backend_options={"exact_qdq": True})
    fp32 = report.reference.top1  # percent
    drops = {c.name: c.drop_top1 for c in report.candidates}
    print(f"\n[digits/test, {report.images_evaluated} images] fp32 top-1 {fp32:.2f} %")
    for cand in report.candidates:
        print(f"  {cand.name:16s} top-1 {cand.top1:.2f} %  drop {cand.drop_top1:+.2f} points")
    assert report.images_evaluated == 359
    assert drops["fp16"] <= 0.1
    best = min((d, n) for n, d in drops.items() if n.startswith("int8"))
    print(f"  best INT8 method: {best[1]} ({best[0]:+.2f} points); chosen by held-out scoring: "
          f"{calibrated.chosen_method}")
    assert best[0] <= 0.5
    chosen = next(c for c in report.candidates if c.name == f"int8-{calibrated.chosen_method}")
    print(f"  chosen method's top-1 agreement with FP32: {100 * chosen.agreement.agreement:.2f} %")
    assert chosen.drop_top1 <= 1.0  # the held-out choice is not far from the test-set best
    # calibrate's own in-memory top-1 agrees with the evaluation stage's numbers
    assert abs(calibrated.fp32_top1 - fp32) < 1e-6
    for method, art in calibrated.methods.items():
        assert abs((calibrated.fp32_top1 - art.top1) - drops[f"int8-{method}"]) < 1e-6
