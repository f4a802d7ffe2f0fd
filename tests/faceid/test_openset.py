"""Open-set scoring and the enrolment threshold on hand-made embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edge_resnet.core import DataError, InputError
from edge_resnet.faceid.openset import (OpenSetScores, evaluate_open_set, format_report,
                                        open_set_scores, report, tar_at_far)
from edge_resnet.faceid.threshold import derive_threshold, enrolment_scores, threshold_at_far


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_threshold_at_far_counts_exactly() -> None:
    imp = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    t = threshold_at_far(imp, 0.2)                     # 2 of 10 may pass: 0.9 and 0.95
    assert np.mean(imp >= t) == 0.2 and 0.8 < t <= 0.9
    t0 = threshold_at_far(imp, 0.01)                   # none may pass
    assert t0 > 0.95 and np.mean(imp >= t0) == 0.0
    ties = np.array([0.5, 0.5, 0.5, 0.1])
    assert np.mean(ties >= threshold_at_far(ties, 0.5)) == 0.0     # ties cannot be split
    assert threshold_at_far(np.array([1.0, 1.0]), 0.1) == 1.0      # clipped to the range
    # similarities are float32: a float32 comparison must pass the same scores as float64
    imp32 = np.random.default_rng(0).uniform(0.5, 0.9, 1000).astype(np.float32)
    t32 = threshold_at_far(imp32.astype(np.float64), 0.01)
    assert np.sum(imp32 >= t32) == np.sum(imp32.astype(np.float64) >= t32) == 10


def test_enrolment_scores_leave_one_out_by_hand() -> None:
    a1, a2 = _unit(np.array([1.0, 0.1, 0])), _unit(np.array([1.0, -0.1, 0]))
    b1 = _unit(np.array([0.0, 1.0, 0.2]))
    genuine, impostor = enrolment_scores([np.stack([a1, a2]), b1[None]])
    np.testing.assert_allclose(sorted(genuine), sorted([a1 @ a2, a2 @ a1]), rtol=1e-6)
    centre_a = _unit(a1 + a2)
    np.testing.assert_allclose(impostor, [a1 @ b1, a2 @ b1, b1 @ centre_a], rtol=1e-6)


def test_one_photo_enrolment_never_scores_an_image_against_itself() -> None:
    """The bug of issue 12: one photo each gave threshold 1.0. Three nearly orthogonal
    identities must get a threshold just above their highest cross-similarity."""
    feats = [_unit(np.eye(3)[i] + 0.05)[None] for i in range(3)]
    threshold, info = derive_threshold(feats, 0.01)
    cross = max(float(feats[i][0] @ feats[j][0]) for i in range(3) for j in range(3) if i != j)
    assert cross < threshold < cross + 1e-6
    assert info["genuine_scores"] == 0 and info["impostor_scores"] == 3
    assert info["impostor_pairs"] == 6 and not info["resolved"]     # 3 / 6 >> 0.01
    with pytest.raises(DataError, match="at least two identities"):
        derive_threshold(feats[:1], 0.01)
    with pytest.raises(InputError, match="target_far is a rate"):
        derive_threshold(feats, 1.5)


def test_open_set_scores_by_hand() -> None:
    # identities 0, 1, 2 along the axes; enrol one image each, probe one each
    feats = _unit(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1],          # enrolment
                            [1, 0.5, 0], [0.2, 1, 0], [0, 0.9, 1]], float))
    labels = np.array([0, 1, 2, 0, 1, 2])
    mated, correct, nonmated = open_set_scores(feats, labels, np.arange(3), np.arange(3, 6))
    np.testing.assert_allclose(mated, [feats[3, 0], feats[4, 1], feats[5, 2]], rtol=1e-6)
    assert correct.tolist() == [True, True, True]
    # strangers: the best similarity to the *other* identities
    np.testing.assert_allclose(nonmated, [feats[3, 1], feats[4, 0], feats[5, 1]], rtol=1e-6)


def test_separable_identities_score_perfectly_and_random_ones_at_chance() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(60, 64)))
    labels = np.repeat(np.arange(60), 8)
    tight = _unit(centres[labels] + 0.05 * rng.normal(size=(480, 64)))
    names = [f"id{i}" for i in range(60)]
    for s in evaluate_open_set(tight, labels, names, (1, 5), draws=3):
        assert s.identities == 60 and s.mated.size == s.nonmated.size == 3 * 60 * (8 - s.photos)
        assert s.correct.all()
        assert tar_at_far(s, 0.001)["tar"] == 1.0
    noise = _unit(rng.normal(size=(480, 64)))
    s1 = evaluate_open_set(noise, labels, names, (1,), draws=3)[0]
    assert s1.correct.mean() < 0.1                      # chance is 1/60
    assert tar_at_far(s1, 0.01)["tar"] <= 0.02


def test_report_marks_unmeasurable_fars_and_refuses_bad_input() -> None:
    scores = OpenSetScores(photos=1, mated=np.array([0.9, 0.8]), correct=np.array([True, False]),
                           nonmated=np.array([0.5, 0.6]), identities=2, draws=1)
    rep = report([scores], (0.01, 0.5))
    first, second = rep["sizes"][0]["tar_at_far"]
    assert not first["measurable"] and second["measurable"]
    assert second["tar"] == 0.5 and second["far_reached"] == 0.5
    text = format_report(rep)
    assert "| 1 | 2 | 2/2 | 0.500 | - | 0.500" in text
    labels = np.array([0, 0, 1])
    with pytest.raises(DataError, match="fewer than two identities"):
        evaluate_open_set(np.eye(3, dtype=np.float32), labels, ["a", "b"], (1,))
    with pytest.raises(InputError, match="labels"):
        evaluate_open_set(np.eye(3, dtype=np.float32), labels[:2], ["a", "b"], (1,))
