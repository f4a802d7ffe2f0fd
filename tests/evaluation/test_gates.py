"""Accuracy gates: max drop, upper bound of the drop's interval, min agreement.

Unit cases judge hand-made reports with known tables; the CLI cases run the digits model
against a candidate that predicts "0" for every image (``class0_digits_onnx``), so every
expected number is derived from the reference's own predictions, never from its accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest

from edge_resnet.cli import main
from edge_resnet.core import InputError
from edge_resnet.evaluation import EvalReport, ModelResult, apply_gates, compare, evaluate
from edge_resnet.evaluation.gates import gate_line

LABELS = np.arange(100) % 10


def _predictions(wrong: List[int]) -> np.ndarray:
    pred = LABELS.copy()
    pred[wrong] = (LABELS[wrong] + 1) % 10
    return pred


def _logits(pred: np.ndarray) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[pred] * 4.0


def _report(labeled: bool = True) -> Tuple[EvalReport, ModelResult, ModelResult]:
    """Reference right on 90 of 100 images (wrong on 0..9). "good" loses image 10 (b=1, c=0:
    drop 1 point, agreement 99 %); "bad" loses 10..19 and gains 0, 1 (b=10, c=2: drop 8 points,
    agreement 88 %)."""
    ref = _predictions(list(range(10)))
    good = _predictions(list(range(11)))
    bad = _predictions(list(range(2, 20)))
    reference = ModelResult("fp32", "fp32.onnx", "test", "fp32", "cpu", 1.0)
    results = []
    for name, pred in (("good", good), ("bad", bad)):
        cmp = compare(_logits(ref), _logits(pred), LABELS if labeled else None)
        result = ModelResult(name, f"{name}.onnx", "test", "int8", "cpu", 1.0,
                             agreement=cmp.agreement, paired=cmp.top1)
        result.drop_top1 = cmp.top1.drop if cmp.top1 is not None else None
        results.append(result)
    report = EvalReport(data_dir="d", labeled=labeled, labels=tuple("0123456789"),
                        files_considered=100, images_evaluated=100, skipped={},
                        reference=reference, candidates=results)
    return report, results[0], results[1]


def test_each_gate_names_its_breach() -> None:
    report, good, bad = _report()
    assert good.drop_top1 == pytest.approx(1.0) and bad.drop_top1 == pytest.approx(8.0)
    assert good.paired is not None and bad.paired is not None
    assert (bad.paired.reference_only, bad.paired.candidate_only) == (10, 2)

    apply_gates(report, max_drop=2.0)
    assert report.gate_passed is False and report.gate_metric == "top1_drop"
    assert report.gate_failures == ["bad: top-1 drop 8.00 > 2 points"]

    # 1 image of 100 is within a 2-point budget, but its 95 % interval reaches further:
    # the upper-bound gate refuses what the point estimate lets through
    high = good.paired.drop_high
    assert 2.0 < high <= 5.0
    apply_gates(report, max_drop_upper=2.0)
    assert [(b.candidate, b.gate) for b in report.gate_breaches] == \
        [("good", "max_drop_upper"), ("bad", "max_drop_upper")]
    assert report.gate_failures[0] == f"good: top-1 drop 95 % upper bound {high:.2f} > 2 points"

    apply_gates(report, min_agreement=95.0)
    assert report.gate_failures == ["bad: top-1 agreement 88.00 % < 95 %"]

    apply_gates(report, max_drop=10.0, max_drop_upper=20.0, min_agreement=80.0)
    assert report.gate_passed is True and report.gate_breaches == []
    assert gate_line(report) == ("Gate: top-1 drop <= 10 points, drop 95 % upper bound <= 20 "
                                 "points, top-1 agreement >= 80 % → PASSED")


def test_no_gate_means_no_verdict() -> None:
    report, _, _ = _report()
    apply_gates(report)
    assert report.gate_passed is None and report.gate_metric is None
    assert gate_line(report).startswith("Gate: none")


def test_unlabeled_gates_on_disagreement_and_refuses_the_interval() -> None:
    report, good, bad = _report(labeled=False)
    assert good.paired is None and bad.paired is None and bad.drop_top1 is None
    apply_gates(report, max_drop=5.0, min_agreement=90.0)
    assert report.gate_metric == "top1_disagreement"
    assert report.gate_failures == ["bad: top-1 disagreement 12.00 > 5 points",
                                    "bad: top-1 agreement 88.00 % < 90 %"]
    with pytest.raises(InputError, match="upper bound of the drop needs labeled images"):
        apply_gates(report, max_drop_upper=1.0)


def test_impossible_gate_values_are_input_errors() -> None:
    report, _, _ = _report()
    with pytest.raises(InputError, match=r"min agreement must be a percentage in \[0, 100\]"):
        apply_gates(report, min_agreement=101.0)
    with pytest.raises(InputError, match="max drop upper bound must be >= 0"):
        apply_gates(report, max_drop_upper=-1.0)


def _argv(digits_onnx: Path, class0: Path, test_dir: Path) -> List[str]:
    return ["eval", str(test_dir), "--reference", str(digits_onnx),
            "--candidate", str(class0), "--name", "int8",
            "--candidate", str(digits_onnx), "--name", "copy", "--no-progress"]


def test_cli_gates_exit_1_naming_gate_and_candidate(
        digits_onnx: Path, class0_digits_onnx: Path, digits_dirs: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    argv = _argv(digits_onnx, class0_digits_onnx, digits_dirs.test_dir)
    out = tmp_path / "gate"
    code = main(argv + ["--max-drop", "100", "--max-drop-upper", "0.5", "--min-agreement", "99",
                        "--report", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    saved = json.loads(out.with_suffix(".json").read_text())
    int8, copy = saved["candidates"]
    # The candidate says "0" everywhere: it agrees exactly where the reference says "0", it
    # is right exactly on the class-0 images (= the class count), the copy changes nothing.
    ref_zero = int8["agreement"]["samples"] - int8["agreement"]["disagreements"]
    class0 = saved["class_counts"][0]
    assert int8["top1_correct"] == class0
    assert int8["paired"]["reference_correct"] == saved["reference"]["top1_correct"]
    agreement = 100.0 * ref_zero / 359
    assert int8["agreement"]["agreement"] == pytest.approx(ref_zero / 359)
    assert copy["agreement"]["disagreements"] == 0 and copy["paired"]["mcnemar_p"] == 1.0
    assert copy["paired"]["drop_low"] == copy["paired"]["drop_high"] == 0.0
    high = int8["paired"]["drop_high"]
    err = captured.err.strip().splitlines()[-1]
    assert err == ("edge-resnet eval: accuracy gate breached: "
                   f"int8: top-1 drop 95 % upper bound {high:.2f} > 0.5 points (--max-drop-upper); "
                   f"int8: top-1 agreement {agreement:.2f} % < 99 % (--min-agreement)")
    assert "copy" not in err
    assert [b["gate"] for b in saved["gate_breaches"]] == ["max_drop_upper", "min_agreement"]
    assert saved["max_drop_upper"] == 0.5 and saved["min_agreement"] == 99.0
    # the same gates with room for the candidate's own numbers pass
    code = main(argv + ["--max-drop", "100", "--max-drop-upper", "100",
                        "--min-agreement", f"{agreement - 0.01:.2f}"])
    assert code == 0 and "PASSED" in capsys.readouterr().out


def test_cli_interval_gate_on_unlabeled_images_exit_2(
        digits_onnx: Path, class0_digits_onnx: Path, digits_dirs: Any,
        capsys: pytest.CaptureFixture) -> None:
    argv = _argv(digits_onnx, class0_digits_onnx, digits_dirs.test_dir)
    assert main(argv + ["--unlabeled", "--max-drop-upper", "1"]) == 2
    assert "needs labeled images" in capsys.readouterr().err


def test_library_gates_match_the_cli(digits_onnx: Path, class0_digits_onnx: Path,
                                     digits_dirs: Any) -> None:
    report = evaluate(digits_onnx, {"int8": class0_digits_onnx}, digits_dirs.test_dir,
                      num_images=120, min_agreement=100.0, progress=False)
    cand = report.candidate("int8")
    assert cand.agreement is not None and cand.paired is not None
    assert report.gate_passed is False and [b.gate for b in report.gate_breaches] == \
        ["min_agreement"]
    assert cand.drop_top1 == pytest.approx(cand.paired.drop)
    assert cand.paired.drop_low <= cand.paired.drop <= cand.paired.drop_high
