"""The enrolment threshold's impostor pairs, union bound and FAR resolution, on synthetic
embeddings whose scores the tests recompute independently."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from edge_resnet.core import DataError, InputError
from edge_resnet.faceid.threshold import (derive_threshold, enrolment_scores, impostor_pairs,
                                          threshold_at_far)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _blocks(identities: int, photos: int, spread: float, seed: int = 0) -> List[np.ndarray]:
    """Identities around random unit centres in 32-d; ``spread`` is the per-photo noise."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(identities, 32)))
    return [_unit(c + spread * rng.normal(size=(photos, 32))) for c in centres]


def _pairs_by_hand(blocks: List[np.ndarray]) -> np.ndarray:
    gallery = _unit(np.stack([b.mean(axis=0) for b in blocks]))
    return np.array([float(x @ gallery[j]) for i, b in enumerate(blocks) for x in b
                     for j in range(len(blocks)) if j != i])


def test_impostor_pairs_are_every_image_against_every_other_identity() -> None:
    blocks = _blocks(4, 3, 0.3)
    pairs = impostor_pairs(blocks)
    assert pairs.shape == (12, 3)
    np.testing.assert_allclose(np.sort(pairs.ravel()), np.sort(_pairs_by_hand(blocks)),
                               rtol=1e-5, atol=1e-6)
    _, best = enrolment_scores(blocks)                   # best per image = max of its row
    np.testing.assert_allclose(best, pairs.max(axis=1))


def test_threshold_is_the_lowest_that_keeps_the_union_bound_under_the_target() -> None:
    blocks = _blocks(20, 5, 0.9)                          # 100 images, 1900 pairs
    threshold, info = derive_threshold(blocks, 0.05)
    pairs = impostor_pairs(blocks).ravel()   # = _pairs_by_hand to ~1e-7 (first test); the
    # threshold is one float32 step above a score, so the counts use the same float32 sums
    assert info["impostor_pairs"] == pairs.size == 1900
    assert info["far_resolution"] == pytest.approx(20 / 1900) and info["resolved"]
    fmr = np.mean(pairs >= threshold)
    assert 20 * fmr <= 0.05 and info["far_bound"] == pytest.approx(20 * fmr)
    below = pairs[pairs < threshold].max()                # one step lower breaks the bound
    assert 20 * np.mean(pairs >= below) > 0.05
    # the bound is stricter than counting each image's best match against the others
    _, best = enrolment_scores(blocks)
    assert threshold >= threshold_at_far(best, 0.05)
    assert info["estimated_far"] == pytest.approx(np.mean(best >= threshold))
    assert info["estimated_far"] <= info["far_bound"]
    assert info["warnings"] == []


def test_a_target_below_the_resolution_is_recorded_and_can_be_refused() -> None:
    blocks = _blocks(6, 1, 0.0)                           # one photo each: 30 pairs
    threshold, info = derive_threshold(blocks, 0.01)
    assert info["far_resolution"] == pytest.approx(6 / 30) and not info["resolved"]
    assert threshold > info["impostor_max"] == pytest.approx(_pairs_by_hand(blocks).max())
    assert info["impostor_max"] == impostor_pairs(blocks).max()
    assert info["pair_fmr"] == 0.0 and info["estimated_tar"] is None
    assert any("cannot resolve" in w or "below what 30 impostor pairs" in w
               for w in info["warnings"])
    with pytest.raises(DataError, match=r"target_far 0.01 cannot be resolved .* at least"):
        derive_threshold(blocks, 0.01, require_resolved=True)
    # a target at the resolution is resolved: at most one pair may pass (6 x 1/30 = 0.2).
    # With one photo each, i-vs-j and j-vs-i are the same score: ties are never split
    t2, info2 = derive_threshold(blocks, 0.2, require_resolved=True)
    pairs = impostor_pairs(blocks).ravel()
    assert info2["resolved"] and t2 <= threshold and np.sum(pairs >= t2) <= 1
    assert np.sum(pairs >= pairs[pairs < t2].max()) > 1


def test_refusals_speak_library_terms() -> None:
    blocks = _blocks(3, 2, 0.1)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match=r"target_far is a rate in \(0, 1\)"):
            derive_threshold(blocks, bad)
    with pytest.raises(DataError, match="at least two identities.*match threshold yourself"):
        derive_threshold(blocks[:1], 0.01)


def test_threshold_trials_measure_the_threshold_on_strangers() -> None:
    from edge_resnet.faceid.openset import enrolment_threshold_trials, open_set_scores

    blocks = _blocks(30, 8, 0.8, seed=1)
    feats = np.concatenate(blocks)
    labels = np.repeat(np.arange(30), 8)
    five = enrolment_threshold_trials(feats, labels, 5, draws=2, seed=0, target_far=0.01)
    one = enrolment_threshold_trials(feats, labels, 1, draws=2, seed=0, target_far=0.01)
    assert [t["resolved"] for t in five] == [True, True]            # 30 / (150 x 29) < 1 %
    assert [t["resolved"] for t in one] == [False, False]           # 30 / (30 x 29) > 1 %
    assert one[0]["far_resolution"] == pytest.approx(1 / 29)
    for trial in five + one:
        # the union bound is never laxer than the best-match rule
        assert trial["threshold"] >= trial["best_match_rule_threshold"]
        assert trial["far"] <= trial["best_match_rule_far"]
        assert 0.0 <= trial["tar"] <= trial["best_match_rule_tar"] <= 1.0
    # recompute draw 0 of the five-photo trials: same draw as evaluate_open_set's
    rng = np.random.default_rng([0, 5, 0])
    enrol, probe = [], []
    for ident in range(30):
        picked = rng.permutation(np.flatnonzero(labels == ident))
        enrol += picked[:5].tolist()
        probe += picked[5:].tolist()
    gallery_blocks = [feats[enrol][labels[enrol] == i] for i in range(30)]
    t, _ = derive_threshold(gallery_blocks, 0.01)
    _, _, nonmated = open_set_scores(feats, labels, np.array(enrol), np.array(probe))
    assert five[0]["threshold"] == t and five[0]["far"] == pytest.approx(np.mean(nonmated >= t))
