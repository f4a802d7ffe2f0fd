"""Accuracy-aware mode on a failure the test controls: two chosen layers get ruined ranges, the
search must find exactly those two; an impossible budget is a GateError.

The failure is made, not hoped for: a fixture model (CPU training differs between machines) may
calibrate well or badly with any given method, so the test ruins the input ranges of two layers
(amax x 1000: every activation rounds to zero there) in an otherwise good INT8 model. The answer
is then known whatever the model: those two layers, and no other, must go back to float.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest

from edge_resnet.calibration import CalibrationOptions, calibrate, check_qdq
from edge_resnet.calibration.options import AccuracyOptions, MethodOptions
from edge_resnet.calibration.checker import float_nodes_of
from edge_resnet.calibration.methods import compute_ranges
from edge_resnet.calibration.mixed import search_mixed
from edge_resnet.calibration.qdq import QdqOptions, build_qdq
from edge_resnet.core import GateError

# Convs whose input tensor feeds nothing else (a ReLU inside a bottleneck block), so ruining
# that tensor's range hurts exactly one layer.
RUINED = ("/layer2/layer2.1/conv2/Conv", "/layer3/layer3.2/conv3/Conv")


def _with_stats(tmp_path: Path, calibrated: Any, digits_onnx: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(calibrated.stats_path, out / f"{digits_onnx.stem}.stats.npz")
    return out


def _test_batches(folder: Path, spec: Any) -> Tuple[List[np.ndarray], np.ndarray]:
    from edge_resnet.calibration.readers import records_reader
    from edge_resnet.images import ImageFolder

    records = ImageFolder(folder, labels=spec.labels, labeled=True).sample(None, 0)
    pairs = list(records_reader(records, spec, batch_size=64))
    return [b for b, _ in pairs], np.concatenate([y for _, y in pairs])


@pytest.mark.slow
def test_mixed_precision_finds_the_two_ruined_layers(calibrated: Any, calib_stats: Any,
                                                     digits_onnx: Path, digits_spec: Any,
                                                     digits_dirs: Any) -> None:
    fp32 = onnx.load(str(digits_onnx))
    nodes = {n.name: n for n in fp32.graph.node}
    method = calibrated.chosen_method
    ranges = compute_ranges(calib_stats, method)
    good = build_qdq(fp32, ranges, QdqOptions(method=method))
    ruined_ranges = dict(ranges)
    for name in RUINED:
        ruined_ranges[nodes[name].input[0]] *= 1000.0
    ruined = build_qdq(fp32, ruined_ranges, QdqOptions(method=method))
    batches, labels = _test_batches(digits_dirs.test_dir, digits_spec)
    _, measured = search_mixed(fp32, good, batches, labels, max_drop=100.0, progress=False)
    budget = max(measured.plain_drop, 0.0) + 0.6  # the good INT8 model plus two images
    model, mixed = search_mixed(fp32, ruined, batches, labels, budget, sensitivity_images=64,
                                progress=False)
    print(f"\ngood INT8 ({method}) drop {measured.plain_drop:.2f}; ruined {mixed.plain_drop:.2f}"
          f" -> float {mixed.float_nodes}: drop {mixed.drop:.2f} (budget {budget:.2f}, "
          f"searched {mixed.evaluated})")
    assert mixed.plain_drop > budget + 5.0  # the ruin really breaks the model
    assert set(mixed.float_nodes) == set(RUINED)
    assert mixed.drop <= budget
    top = sorted(mixed.sensitivity, key=lambda n: -mixed.sensitivity[n])[:2]
    assert set(top) == set(RUINED)  # the sensitivity ranking put them first
    assert check_qdq(model) == []
    assert float_nodes_of(model) == set(RUINED)
    index = {n.name: n for n in model.graph.node}
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    for name in RUINED:  # fed by the float tensor now; every other Conv still quantized
        assert producers[index[name].input[0]] != "DequantizeLinear"
    assert sum(producers.get(n.input[0]) == "DequantizeLinear"
               for n in model.graph.node if n.op_type == "Conv") == 53 - 2


@pytest.mark.slow
def test_unreachable_budget_is_a_gate_error(tmp_path: Path, calibrated: Any,
                                            digits_onnx: Path, digits_dirs: Any) -> None:
    out = _with_stats(tmp_path, calibrated, digits_onnx)
    with pytest.raises(GateError, match="most sensitive layers in float .* still exceeds"):
        calibrate(digits_onnx, None, out, CalibrationOptions(
            methods=("percentile",), ranges=MethodOptions(percentile=5.0), progress=False,
            accuracy=AccuracyOptions(digits_dirs.test_dir, max_drop=0.0, max_float_layers=2,
                                     sensitivity_images=16)))
    assert not (out / f"{digits_onnx.stem}.int8.mixed.onnx").exists()
