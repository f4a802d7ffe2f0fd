"""Statistics: one pass covers every activation; saved stats reload and refuse other models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_resnet.calibration.methods import compute_ranges, method_names
from edge_resnet.calibration.stats import ActivationStats, model_fingerprint
from edge_resnet.core import CalibrationError, InputError


def test_one_pass_gives_all_four_methods(calib_stats: Any, digits_onnx: Path) -> None:
    graph = onnx.load(str(digits_onnx)).graph
    assert calib_stats.num_images == 200
    assert graph.input[0].name in calib_stats.tensors
    for node in graph.node:
        if node.op_type in ("Conv", "Relu", "Add", "MaxPool", "Gemm"):
            assert node.output[0] in calib_stats.tensors
    ranges = {m: compute_ranges(calib_stats, m) for m in method_names()}
    relu = next(n.output[0] for n in graph.node if n.op_type == "Relu")
    assert calib_stats.tensors[relu].minimum == 0.0
    for method in method_names():
        assert 0.0 < ranges[method][relu] <= calib_stats.tensors[relu].absmax + 1e-6


def test_save_load_round_trip(calib_stats: Any, tmp_path: Path) -> None:
    path = calib_stats.save(tmp_path / "s.npz")
    again = ActivationStats.load(path, fingerprint=calib_stats.fingerprint)
    assert again.num_images == calib_stats.num_images
    for name, t in calib_stats.tensors.items():
        u = again.tensors[name]
        assert (u.minimum, u.maximum, u.width) == (t.minimum, t.maximum, t.width)
        np.testing.assert_array_equal(u.hist, t.hist)


def test_stats_of_another_model_are_refused(calib_stats: Any, digits_onnx: Path,
                                            tmp_path: Path) -> None:
    other = onnx.load(str(digits_onnx))
    init = other.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    path = calib_stats.save(tmp_path / "s.npz")
    with pytest.raises(CalibrationError, match="statistics of another model"):
        ActivationStats.load(path, fingerprint=model_fingerprint(other))


def test_bad_stats_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CalibrationError, match="not an edge-resnet statistics file"):
        ActivationStats.load(junk)
    with pytest.raises(InputError, match="does not exist"):
        ActivationStats.load(tmp_path / "none.npz")
