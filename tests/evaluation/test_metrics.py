"""Evaluation maths against values worked out by hand (in the comments next to each case)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.evaluation.metrics import (agreement_stats, cosine_similarity, kl_divergence,
                                            log_softmax, max_abs_diff, per_class_accuracy,
                                            percentile, softmax, top1_agreement, topk_accuracy,
                                            topk_correct)

# Row 0: argmax 0 = label 0 -> top-1 right.
# Row 1: label 2 has logit 1, one logit (3) is larger -> rank 1: top-1 wrong, top-2 right.
# Row 2: classes 0 and 1 tie at 1; the tie goes to the lower index (argmax picks 0), so label 1
#        ranks second: top-1 wrong, top-2 right.
LOGITS = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
LABELS = np.array([0, 2, 1])


def test_topk_by_hand() -> None:
    assert topk_correct(LOGITS, LABELS, 1).tolist() == [True, False, False]
    assert topk_correct(LOGITS, LABELS, 2).tolist() == [True, True, True]
    assert topk_accuracy(LOGITS, LABELS, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(LOGITS, LABELS, 2) == 1.0
    assert topk_accuracy(LOGITS, LABELS, 5) == 1.0  # k beyond the class count: all finite rows
    # top-1 from the ranking always equals argmax, ties included
    assert (topk_correct(LOGITS, LABELS, 1) == (LOGITS.argmax(1) == LABELS)).all()


def test_top5_of_seven_classes_by_hand() -> None:
    # Label 6 has logit 0.5; five logits (7, 6, 5, 4, 3) are larger -> rank 5: outside the top 5.
    row = np.array([[7.0, 6.0, 5.0, 4.0, 3.0, 1.0, 0.5]])
    assert topk_correct(row, np.array([6]), 5).tolist() == [False]
    assert topk_correct(row, np.array([4]), 5).tolist() == [True]   # logit 3: rank 4
    assert topk_correct(row, np.array([5]), 5).tolist() == [False]  # logit 1: rank 5


def test_per_class_counts_by_hand() -> None:
    hits, totals = per_class_accuracy(LOGITS, LABELS)
    assert hits.tolist() == [1, 0, 0] and totals.tolist() == [1, 1, 1]
    # A class absent from the labels keeps count 0 rather than a NaN ratio.
    hits, totals = per_class_accuracy(np.array([[1.0, 0.0, 0.0, 0.0]] * 2), np.array([0, 0]))
    assert hits.tolist() == [2, 0, 0, 0] and totals.tolist() == [2, 0, 0, 0]


def test_softmax_by_hand_and_stable() -> None:
    # softmax([0, ln 3]) = [1/(1+3), 3/(1+3)] = [0.25, 0.75]
    np.testing.assert_allclose(softmax(np.array([[0.0, math.log(3)]])), [[0.25, 0.75]])
    # Shifting by 1000 changes nothing (a naive exp overflows to inf/inf = nan).
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0 + math.log(3)]])), [[0.25, 0.75]])
    # log_softmax([0, ln 3]) = [ln 0.25, ln 0.75] = [-1.3862944, -0.2876821]
    np.testing.assert_allclose(log_softmax(np.array([[0.0, math.log(3)]])),
                               [[-1.3862944, -0.2876821]], atol=1e-7)
    # log_softmax([-1000, 0]) = [-1000 - log1p(e^-1000), -log1p(e^-1000)] = [-1000, 0]:
    # the tiny probability stays exact in log space
    np.testing.assert_allclose(log_softmax(np.array([[-1000.0, 0.0]])), [[-1000.0, 0.0]])


def test_kl_by_hand() -> None:
    # p = softmax([0, ln 3]) = [1/4, 3/4], q = softmax([0, 0]) = [1/2, 1/2]
    # KL(p||q) = 1/4 ln(1/2) + 3/4 ln(3/2) = -0.1732868 + 0.3040988 = 0.1308120
    ref = np.array([[0.0, math.log(3)]])
    assert kl_divergence(ref, np.array([[0.0, 0.0]]))[0] == pytest.approx(0.1308120, abs=1e-7)
    assert kl_divergence(ref, np.array([[5.0, 5.0]]))[0] == pytest.approx(0.1308120, abs=1e-7)
    assert kl_divergence(ref, ref)[0] == 0.0
    # p = softmax([0, 1000]) ~ [0, 1], q = softmax([1000, 0]) ~ [1, 0]:
    # KL = 1 * (log 1 - log e^-1000) = 1000 (a naive softmax gives log 0 = -inf here)
    assert kl_divergence(np.array([[0.0, 1000.0]]), np.array([[1000.0, 0.0]]))[0] == \
        pytest.approx(1000.0)


def test_cosine_by_hand() -> None:
    ref = np.array([[1.0, 2.0, 2.0], [3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                    [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    cand = np.array([[2.0, 1.0, 2.0], [6.0, 8.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # [1,2,2].[2,1,2] = 8, norms 3 and 3 -> 8/9; parallel -> 1; orthogonal -> 0; opposite -> -1;
    # both zero -> identical (1); zero against non-zero -> 0
    np.testing.assert_allclose(cosine_similarity(ref, cand), [8 / 9, 1.0, 0.0, -1.0, 1.0, 0.0])


def test_agreement_stats_by_hand() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 5.0]])
    cand = np.array([[2.0, 0.0], [1.0, 0.0], [3.0, 1.0], [0.0, 2.5]])
    # argmax ref [0, 1, 0, 1], cand [0, 0, 0, 1] -> 3 of 4 agree
    assert top1_agreement(ref, cand) == 0.75
    # |diff| per row: 1, 1, 1, 2.5 -> 2.5
    assert max_abs_diff(ref, cand) == 2.5
    stats = agreement_stats(ref, cand)
    # cosines: 1; 0; [2,1].[3,1] = 7 / (sqrt 5 sqrt 10) = 0.9899495; 1
    # mean = 2.9899495 / 4 = 0.7474874; min 0; p5: sorted [0, .98995, 1, 1], position 3 * 0.05 =
    # 0.15 -> 0 + 0.15 * 0.9899495 = 0.1484924
    assert stats.agreement == 0.75 and stats.samples == 4 and stats.nonfinite_samples == 0
    assert stats.cosine_mean == pytest.approx(0.7474874, abs=1e-7)
    assert stats.cosine_min == 0.0
    assert stats.cosine_p5 == pytest.approx(0.1484924, abs=1e-7)
    # row 1: p = softmax([0, 1]) = [0.2689414, 0.7310586], q = softmax([1, 0]) = reversed:
    # KL = 0.2689414 ln(0.2689414/0.7310586) + 0.7310586 ln(0.7310586/0.2689414)
    #    = (0.7310586 - 0.2689414) * 1 = 0.4621172 (log ratio is exactly 1)
    assert kl_divergence(ref, cand)[1] == pytest.approx(0.4621172, abs=1e-7)
    assert stats.kl_max == pytest.approx(0.4621172, abs=1e-7)


def test_nonfinite_candidate_fails_loudly() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    cand = np.array([[np.nan, 0.0], [0.0, 1.0]])
    assert topk_correct(cand, np.array([0, 1]), 1).tolist() == [False, True]
    assert top1_agreement(ref, cand) == 0.5
    assert kl_divergence(ref, cand).tolist() == [math.inf, 0.0]
    stats = agreement_stats(ref, cand)
    assert stats.nonfinite_samples == 1 and stats.cosine_min == 0.0
    assert stats.to_dict()["kl_max"] is None and stats.to_dict()["kl_p95"] is None


def test_percentile_by_hand() -> None:
    # [0, 1, 2, 3]: p95 at position 3 * 0.95 = 2.85 -> 2.85; p50 at 1.5 -> 1.5
    assert percentile(np.array([3.0, 0.0, 2.0, 1.0]), 95) == pytest.approx(2.85)
    assert percentile(np.array([3.0, 0.0, 2.0, 1.0]), 50) == pytest.approx(1.5)
    # between two infinities numpy gives nan; an infinite KL must stay inf
    assert percentile(np.array([0.0, 1.0, math.inf, math.inf]), 95) == math.inf


def test_bad_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="2-D array"):
        softmax(np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="differ in shape"):
        top1_agreement(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InputError, match=r"labels must be in \[0, 3\)"):
        topk_correct(LOGITS, np.array([0, 1, 3]))
    with pytest.raises(InputError, match="k must be >= 1"):
        topk_correct(LOGITS, LABELS, 0)
    with pytest.raises(InputError, match="zero samples"):
        agreement_stats(np.zeros((0, 3)), np.zeros((0, 3)))
