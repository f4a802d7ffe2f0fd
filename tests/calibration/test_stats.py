"""Statistics: one pass covers every activation; saved stats reload and refuse other models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_resnet.calibration.methods import compute_ranges, method_names
from edge_resnet.calibration.stats import (ActivationStats, TensorStats, _Scratch,
                                           model_fingerprint)
from edge_resnet.core import CalibrationError, InputError


def test_one_pass_gives_all_four_methods(calib_stats: Any, digits_onnx: Path) -> None:
    graph = onnx.load(str(digits_onnx)).graph
    assert calib_stats.num_images == 160  # 200 sampled, every 5th held out to score methods
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


def _reference_hist(batches: List[np.ndarray], bins: int) -> Tuple[np.ndarray, float]:
    """The plain binning rule: clip(int(float32(|x|) * float32(1 / width)), bins - 1)."""
    hist, width = np.zeros(bins, np.int64), 0.0
    for values in batches:
        absolute = np.abs(values.ravel(), dtype=np.float32)
        peak = float(absolute.max())
        if width == 0.0:
            if peak == 0.0:
                hist[0] += absolute.size
                continue
            width = peak / bins
        while peak > width * bins:
            hist = np.concatenate([hist.reshape(-1, 2).sum(axis=1), np.zeros(bins // 2, np.int64)])
            width *= 2.0
        index = np.minimum((absolute * np.float32(1.0 / width)).astype(np.int64), bins - 1)
        hist += np.bincount(index, minlength=bins)
    return hist, width


def test_chunked_binning_matches_the_plain_rule() -> None:
    rng = np.random.default_rng(3)
    bins = 256
    big = 3 * _Scratch.CHUNK + 17  # several chunks and a ragged tail
    batches: List[np.ndarray] = [
        np.zeros(1000, np.float32),                                  # all-zero first batch
        np.linspace(-1.0, 1.0, 4001, dtype=np.float32),              # |x| == width * bins hits
        (rng.standard_normal(big) * 3).astype(np.float32),           # range grows: merges
        np.maximum(rng.standard_normal((2, 8, 64, 64)), 0).astype(np.float32),
        rng.standard_normal(5000) * 50.0,                            # float64 input, growth
    ]
    assert (np.abs(batches[1]) * np.float32(bins)).astype(np.int64).max() == bins  # fold path
    stats = TensorStats("t", float("inf"), float("-inf"), np.zeros(bins, np.int64), 0.0)
    scratch = _Scratch()
    for batch in batches:
        stats.update(batch, scratch)
    hist, width = _reference_hist(batches, bins)
    np.testing.assert_array_equal(stats.hist, hist)
    assert stats.width == width
    assert stats.hist.sum() == stats.count == sum(b.size for b in batches)
    assert stats.minimum == min(float(b.min()) for b in batches)
    assert stats.maximum == max(float(b.max()) for b in batches)


def test_non_finite_activations_fail_loudly() -> None:
    stats = TensorStats("conv1", float("inf"), float("-inf"), np.zeros(256, np.int64), 0.0)
    with pytest.raises(CalibrationError, match="'conv1' has non-finite values"):
        stats.update(np.array([0.5, np.nan, 1.0], np.float32))
    with pytest.raises(CalibrationError, match="non-finite"):
        stats.update(np.array([0.5, np.inf], np.float32))
    with pytest.raises(CalibrationError, match="exceeds the float32 range"):
        stats.update(np.array([1.0, 1e39]))
