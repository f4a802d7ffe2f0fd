"""Range methods on synthetic distributions whose answers are known."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edge_resnet.calibration.methods import (MethodOptions, _entropy_divergences, compute_amax,
                                             method_names)
from edge_resnet.calibration.stats import TensorStats
from edge_resnet.core import InputError


def _stats(*batches: np.ndarray, bins: int = 2048) -> TensorStats:
    stats = TensorStats("t", float("inf"), float("-inf"), np.zeros(bins, np.int64), 0.0)
    for batch in batches:
        stats.update(batch.astype(np.float32))
    return stats


@pytest.fixture(scope="module")
def gaussian_outliers() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.standard_normal(400_000).astype(np.float32)
    data[:20] = rng.uniform(20.0, 40.0, size=20)  # 0.005 % outliers far out
    return data


def test_registry_lists_the_four_methods() -> None:
    assert method_names() == ["entropy", "minmax", "mse", "percentile"]
    with pytest.raises(InputError, match="unknown calibration method 'kl'"):
        compute_amax(_stats(np.ones(10)), "kl", MethodOptions())


@pytest.mark.parametrize("bad", [0.0, -1.0, 100.5])
def test_percentile_outside_range_is_refused(bad: float) -> None:
    with pytest.raises(InputError, match=r"percentile=\S+: must be in \(0, 100\]"):
        MethodOptions(percentile=bad)


def test_minmax_is_the_exact_absolute_maximum(gaussian_outliers: np.ndarray) -> None:
    stats = _stats(gaussian_outliers[:1000], gaussian_outliers)
    assert compute_amax(stats, "minmax", MethodOptions()) == pytest.approx(
        float(np.abs(gaussian_outliers).max()), rel=0, abs=0)


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_one_bin(gaussian_outliers: np.ndarray, p: float) -> None:
    stats = _stats(gaussian_outliers)
    got = compute_amax(stats, "percentile", MethodOptions(percentile=p))
    want = float(np.percentile(np.abs(gaussian_outliers), p))
    assert abs(got - want) <= stats.width + 1e-6, (got, want, stats.width)


def test_percentile_100_is_the_maximum(gaussian_outliers: np.ndarray) -> None:
    stats = _stats(gaussian_outliers)
    assert compute_amax(stats, "percentile", MethodOptions(percentile=100)) == stats.absmax


def test_entropy_clips_outliers_and_keeps_the_bulk(gaussian_outliers: np.ndarray) -> None:
    stats = _stats(gaussian_outliers)
    amax = compute_amax(stats, "entropy", MethodOptions())
    print(f"entropy amax {amax:.3f} (max {stats.absmax:.3f})")
    assert 3.0 < amax < 0.5 * stats.absmax


def test_mse_lies_between_the_bulk_and_the_maximum(gaussian_outliers: np.ndarray) -> None:
    stats = _stats(gaussian_outliers)
    amax = compute_amax(stats, "mse", MethodOptions())
    print(f"mse amax {amax:.3f} (max {stats.absmax:.3f})")
    assert 2.5 < amax < stats.absmax


def test_uniform_data_keeps_nearly_the_full_range() -> None:
    data = np.random.default_rng(1).uniform(-1.0, 1.0, 200_000)
    stats = _stats(data)
    for method in ("entropy", "mse", "percentile"):
        assert compute_amax(stats, method, MethodOptions()) > 0.9, method


def test_all_zero_tensor_gets_a_positive_range() -> None:
    stats = _stats(np.zeros(100))
    for method in method_names():
        assert compute_amax(stats, method, MethodOptions()) > 0.0


def test_histogram_growth_merges_exactly() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.uniform(-1, 1, 50_000), rng.uniform(-9, 9, 50_000)
    stats = _stats(small, large)
    assert int(stats.hist.sum()) == 100_000
    assert stats.width * len(stats.hist) >= 9.0 - 1e-3 > stats.width * len(stats.hist) / 2
    direct, _ = np.histogram(np.abs(np.concatenate([small, large])).astype(np.float32),
                             bins=len(stats.hist), range=(0, stats.width * len(stats.hist)))
    assert np.abs(direct - stats.hist).sum() <= 20  # float32 rounding at bin edges only


def _reference_entropy(hist: np.ndarray, i: int, nbins: int = 128) -> float:
    """A direct port of pytorch-quantization's loop body for one candidate ``i``."""
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    space = np.linspace(0, i, num=nbins + 1)
    digitized = np.digitize(range(i), space) - 1
    digitized[bins[:i] == 0] = -1
    counts = np.zeros(nbins)
    for idx, d in enumerate(digitized):
        if d != -1:
            counts[d] += bins[idx]
    for key, val in Counter(digitized).items():
        if key != -1:
            counts[key] /= val
    new = np.array([counts[d] if d != -1 else 0.0 for d in digitized])
    ref = bins[:i].copy()
    ref[-1] += bins[i:].sum()
    p, q = ref / ref.sum(), new / new.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.any((p > 0) & (q == 0)):
            return float("inf")
        return float(np.sum(np.where(p > 0, p * np.log(p / q), 0.0)))


def test_vectorised_kl_equals_the_reference_loop() -> None:
    rng = np.random.default_rng(3)
    hist = np.histogram(np.abs(rng.standard_normal(50_000)), bins=512)[0]
    hist[300:310] = 0  # empty bins: infinite divergence where the clip bin is empty
    candidates = np.array([128, 129, 200, 255, 305, 310, 400, 511, 512])
    fast = _entropy_divergences(hist, 128, candidates)
    slow = np.array([_reference_entropy(hist, int(i)) for i in candidates])
    assert np.array_equal(np.isinf(fast), np.isinf(slow))
    finite = np.isfinite(slow)
    np.testing.assert_allclose(fast[finite], slow[finite], rtol=1e-9, atol=1e-12)
