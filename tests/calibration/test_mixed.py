"""Accuracy-aware mode: a deliberately bad calibration misses the budget, mixed precision
meets it by keeping the most sensitive Conv layers float; an impossible budget is a GateError."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest

from edge_resnet.calibration import calibrate, check_qdq
from edge_resnet.calibration.checker import float_nodes_of
from edge_resnet.core import GateError

BUDGET = 0.5  # top-1 points on digits/test
BAD_PERCENTILE = 99.5  # clips 0.5 % of every activation: deliberately bad ranges


def _with_stats(tmp_path: Path, calibrated: Any, digits_onnx: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(calibrated.stats_path, out / f"{digits_onnx.stem}.stats.npz")
    return out


def test_mixed_precision_meets_a_budget_bad_int8_misses(tmp_path: Path, calibrated: Any,
                                                        digits_onnx: Path,
                                                        digits_dirs: Any) -> None:
    out = _with_stats(tmp_path, calibrated, digits_onnx)
    result = calibrate(digits_onnx, None, out, methods=("percentile",),
                       percentile=BAD_PERCENTILE, max_drop=BUDGET,
                       eval_data=digits_dirs.test_dir, progress=False)
    mixed = result.mixed
    print(f"\nbad INT8 (percentile {BAD_PERCENTILE}) drop {mixed.plain_drop:.2f} points; "
          f"mixed: {len(mixed.float_nodes)} layer(s) float {mixed.float_nodes} -> drop "
          f"{mixed.drop:.2f} points (searched {mixed.evaluated})")
    assert mixed.plain_drop > BUDGET  # the plain model really misses the budget
    assert mixed.drop <= BUDGET
    assert 0 < len(mixed.float_nodes) <= (53 + 16) // 4
    model = onnx.load(str(result.mixed_path))
    assert check_qdq(model) == []
    assert float_nodes_of(model) == set(mixed.float_nodes)
    # the k-1 most sensitive layers were not enough (the search found the smallest k)
    k = len(mixed.float_nodes)
    assert all(drop > BUDGET for n, drop in mixed.evaluated if n < k)


def test_unreachable_budget_is_a_gate_error(tmp_path: Path, calibrated: Any,
                                            digits_onnx: Path, digits_dirs: Any) -> None:
    out = _with_stats(tmp_path, calibrated, digits_onnx)
    with pytest.raises(GateError, match="most sensitive layers in float .* still exceeds"):
        calibrate(digits_onnx, None, out, methods=("percentile",), percentile=5.0,
                  max_drop=0.0, max_float_layers=2, eval_data=digits_dirs.test_dir,
                  sensitivity_images=16, progress=False)
    assert not (out / f"{digits_onnx.stem}.int8.mixed.onnx").exists()
