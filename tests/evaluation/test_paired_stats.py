"""Paired statistics (exact McNemar, bootstrap drop interval, compare) against worked answers."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Tuple

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.evaluation.metrics import DIFF_EDGES, abs_diff_histogram
from edge_resnet.evaluation.stats import (bootstrap_drop_interval, compare, mcnemar_exact,
                                          paired_top1)


def test_mcnemar_exact_by_hand() -> None:
    # b = 7, c = 5: n = 12, P(X <= 5) = (1 + 12 + 66 + 220 + 495 + 792) / 4096 = 1586 / 4096,
    # two-sided 3172 / 4096 = 0.7744140625: a 0.56-point drop on 359 images is noise
    assert mcnemar_exact(7, 5) == 3172 / 4096 == mcnemar_exact(5, 7)
    assert mcnemar_exact(2, 2) == 1.0  # balanced: nothing to explain
    assert mcnemar_exact(0, 0) == 1.0  # no discordant image at all
    assert mcnemar_exact(0, 5) == 2 / 32  # all five discordant one way: 2 * (1/2)^5
    assert mcnemar_exact(1, 9) == 22 / 1024  # 2 * (1 + 10) / 2^10
    assert mcnemar_exact(2, 1) == 1.0  # 2 * (1 + 3) / 8 = 1 (capped)
    # 20 vs 25 of 45: 2 * sum_{k<=20} C(45, k) / 2^45, summed independently with Fraction
    expected = Fraction(2 * sum(math.comb(45, k) for k in range(21)), 2 ** 45)
    assert mcnemar_exact(20, 25) == pytest.approx(float(expected), rel=1e-15)
    assert mcnemar_exact(20, 25) == pytest.approx(0.5514843298025198, rel=1e-12)
    # far in the tail the exact integer sum keeps its digits: 2 * (1 + 2000) / 2^2000 = 0.0
    # in float (below the smallest double), and a few thousand pairs stay fast and finite
    assert mcnemar_exact(1, 1999) == 0.0
    assert 0.0 < mcnemar_exact(3000, 2600) < 1e-6


def test_mcnemar_matches_scipy_binomtest() -> None:
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy not installed")
    for b in (0, 1, 2, 3, 5, 8, 13, 21, 34):
        for c in range(0, 40, 3):
            if b + c:
                want = scipy_stats.binomtest(b, b + c, 0.5).pvalue
                assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9, abs=1e-300)
    for b, c in ((3000, 2600), (12000, 11500)):
        want = scipy_stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9)


def _correctness(n: int, both: int, ref_only: int, cand_only: int) -> Tuple[np.ndarray, np.ndarray]:
    ref = np.zeros(n, bool)
    cand = np.zeros(n, bool)
    ref[:both + ref_only] = True
    cand[:both] = True
    cand[both + ref_only:both + ref_only + cand_only] = True
    return ref, cand


def test_two_discordant_both_ways_is_no_evidence() -> None:
    ref, cand = _correctness(359, both=330, ref_only=2, cand_only=2)
    paired = paired_top1(ref, cand)
    assert (paired.reference_correct, paired.candidate_correct) == (332, 332)
    assert (paired.reference_only, paired.candidate_only, paired.discordant) == (2, 2, 4)
    assert paired.drop == 0.0 and paired.mcnemar_p == 1.0
    assert paired.drop_low < 0.0 < paired.drop_high  # could be a gain or a loss
    # a resample draws whole images: every bound is a multiple of one image (100/359 points)
    for bound in (paired.drop_low, paired.drop_high):
        assert bound * 359 / 100 == pytest.approx(round(bound * 359 / 100), abs=1e-9)


def _logits_for(predictions: np.ndarray, classes: int = 10) -> np.ndarray:
    logits = np.zeros((predictions.size, classes), np.float32)
    logits[np.arange(predictions.size), predictions] = 5.0
    return logits


def test_49_changed_predictions_can_be_a_gain() -> None:
    # 359 images of 10 classes. The reference is right on 330. The candidate changes 49
    # predictions: 20 right -> wrong, 25 wrong -> right, 4 wrong -> another wrong class.
    labels = np.arange(359) % 10
    ref_pred = labels.copy()
    ref_pred[330:] = (labels[330:] + 1) % 10             # images 330..358 wrong (29)
    cand_pred = ref_pred.copy()
    cand_pred[:20] = (labels[:20] + 3) % 10               # b = 20: reference-only right
    cand_pred[330:355] = labels[330:355]                  # c = 25: candidate-only right
    cand_pred[355:] = (labels[355:] + 2) % 10             # 4 both wrong, prediction changed
    result = compare(_logits_for(ref_pred), _logits_for(cand_pred), labels)
    assert result.samples == 359 and result.disagreements == 49
    assert result.agreement.agreement == pytest.approx(310 / 359)
    top1 = result.top1
    assert top1 is not None
    assert (top1.reference_correct, top1.candidate_correct) == (330, 335)
    assert (top1.reference_only, top1.candidate_only) == (20, 25)
    assert top1.drop == pytest.approx(100.0 * -5 / 359)  # -1.39 points: a gain
    assert top1.mcnemar_p == pytest.approx(0.5514843298025198, rel=1e-12)
    assert top1.drop_low < top1.drop < top1.drop_high and top1.drop_low < 0 < top1.drop_high
    assert top1.to_dict()["discordant"] == 45


def test_bootstrap_interval_is_deterministic_and_brackets_the_estimate() -> None:
    first = bootstrap_drop_interval(359, 12, 4)
    assert first == bootstrap_drop_interval(359, 12, 4)  # fixed default seed
    assert first[0] <= 100.0 * 8 / 359 <= first[1]
    # the seed is really used (with 10,000 resamples the bounds sit on the same one-image
    # steps whatever the seed; with 50 they move)
    few = [bootstrap_drop_interval(359, 12, 4, resamples=50, seed=s) for s in (0, 1)]
    assert few[0] != few[1] and few[0] == bootstrap_drop_interval(359, 12, 4, resamples=50)
    # a wider confidence gives a wider interval; ten times the images, a narrower one
    wide = bootstrap_drop_interval(359, 12, 4, confidence=0.99)
    assert wide[0] <= first[0] and wide[1] >= first[1] and wide != first
    big = bootstrap_drop_interval(3590, 120, 40)
    assert big[1] - big[0] < (first[1] - first[0]) / 2
    # degenerate tables have no spread
    assert bootstrap_drop_interval(359, 0, 0) == (0.0, 0.0)
    assert bootstrap_drop_interval(10, 10, 0) == (100.0, 100.0)


def test_bootstrap_matches_resampling_image_indices() -> None:
    # The multinomial draw is the same distribution as resampling indices: with 20,000
    # resamples each, the two 95 % bounds agree to within one image (0.28 points).
    ref, cand = _correctness(359, both=300, ref_only=12, cand_only=4)
    rng = np.random.default_rng(123)
    idx = rng.integers(0, 359, size=(20000, 359), dtype=np.int32)
    drops = 100.0 * (ref[idx].sum(1).astype(int) - cand[idx].sum(1).astype(int)) / 359
    naive = np.percentile(drops, [2.5, 97.5])
    fast = bootstrap_drop_interval(359, 12, 4, resamples=20000)
    np.testing.assert_allclose(fast, naive, atol=100.0 / 359 + 1e-9)


def test_unlabeled_compare_has_agreement_only() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    cand = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 1.5]])
    result = compare(ref, cand)
    assert result.top1 is None
    assert result.disagreements == 1 and result.agreement.agreement == pytest.approx(2 / 3)


def test_logit_diff_histogram_bins_by_hand() -> None:
    edges = np.asarray(DIFF_EDGES)
    assert edges[0] == 0.0 and edges[1] == pytest.approx(1e-7) and edges[-1] == pytest.approx(1e3)
    one = int(np.argmin(np.abs(edges - 1.0)))
    ref = np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 0.0]])
    # |diff| = [0, 1, 0.5], [1e-9, 2000, inf]
    cand = np.array([[0.0, 2.0, 2.5], [5.0 + 1e-9, 2000.0, np.inf]])
    hist = abs_diff_histogram(ref, cand, chunk_rows=1)
    counts = np.asarray(hist.counts)
    assert hist.nonfinite == 1 and hist.total == 6
    assert counts[0] == 2  # 0 and 1e-9 (the [0, 1e-7) bin; 5 + 1e-9 - 5 is not exactly 1e-9)
    assert counts[one] == 1  # exactly 1.0 opens the bin [1, 1.78)
    assert counts[one - 2] == 1  # 0.5 in [10^-0.5, 10^-0.25) = [0.316, 0.562)
    assert counts[-1] == 1  # 2000 in the open last bin [1000, inf)
    assert counts.sum() == 5


def test_bad_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="non-negative integers"):
        mcnemar_exact(-1, 3)
    with pytest.raises(InputError, match="1-D boolean"):
        paired_top1(np.array([1, 0]), np.array([True, False]))
    with pytest.raises(InputError, match="differ in length"):
        paired_top1(np.array([True]), np.array([True, False]))
    with pytest.raises(InputError, match="zero samples"):
        paired_top1(np.zeros(0, bool), np.zeros(0, bool))
    with pytest.raises(InputError, match="confidence must be between 0 and 1"):
        compare(np.zeros((2, 2)), np.zeros((2, 2)), confidence=95)
    with pytest.raises(InputError, match="resamples must be >= 1"):
        bootstrap_drop_interval(10, 1, 1, resamples=0)
    with pytest.raises(InputError, match="reference_only \\+ candidate_only <= samples"):
        bootstrap_drop_interval(10, 8, 3)
