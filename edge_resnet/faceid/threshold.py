"""The match threshold from the enrolment images alone, chosen for a target false accept rate.

Why not "genuine vs impostor at the best split" over gallery means that contain the image
being scored: with one photo per person each image is then compared with itself (similarity
1.0), and the threshold came out as exactly 1.0, so nobody was ever matched. Here:

* **impostor pairs**: every enrolment image against every *other* identity's gallery vector,
  N x (K - 1) scores for N images of K identities. Their pass rate at t is the one-to-one
  false match rate FMR(t).
* a stranger at run time is compared with all K gallery vectors and accepted when *any*
  reaches t, so the false accept rate the threshold is for is bounded by the union bound
  ``FAR(t) <= K * FMR(t)`` (no independence assumed). The threshold is the lowest t with
  ``K * FMR(t) <= target_far``. This is stricter than counting each image's best match
  against the others (the ``estimated_far`` recorded alongside, with a gallery of K - 1),
  which with 59 one-photo identities let 1.8-3.9 % of real strangers through at a 1 % target.
* **resolution**: the smallest non-zero FAR the pairs can show is K / (N (K - 1)), about
  1 / N: more pairs resolve the one-to-one FMR finely, but not the rate at which a stranger
  beats *some* identity. A ``target_far`` below it cannot be resolved: the threshold then
  sits just above the highest impostor score (the strictest the data supports), the record
  says ``resolved: false`` with the resolvable FAR and a warning, and
  ``require_resolved=True`` refuses instead.
* **genuine** scores, leave-one-out: each image against the mean of the *other* images of its
  identity (identities with at least two images). They estimate the true accept rate at the
  chosen threshold; with one photo per identity there are none, and the record says so.

Device side: Python 3.8, numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from edge_resnet.core import DataError, InputError

__all__ = ["derive_threshold", "enrolment_scores", "impostor_pairs", "threshold_at_far",
           "unit_rows"]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def impostor_pairs(feats: Sequence[np.ndarray]) -> np.ndarray:
    """N x (K - 1) scores: each unit-norm image of each identity block against every other
    identity's gallery vector (the normalised mean of its block)."""
    centres = unit_rows(np.stack([f.mean(axis=0) for f in feats]))
    rows = [np.delete(block @ centres.T, i, axis=1) for i, block in enumerate(feats)]
    return np.concatenate(rows).astype(np.float64)


def enrolment_scores(feats: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of unit-norm per-identity feature blocks: leave-one-out
    genuine scores, and each image's best score against the other identities."""
    genuine: List[np.ndarray] = []
    for block in feats:
        n = len(block)
        if n >= 2:  # leave-one-out mean of the other images of this identity
            others = unit_rows((block.sum(axis=0, keepdims=True) - block) / (n - 1))
            genuine.append(np.einsum("ij,ij->i", block, others))
    gen = np.concatenate(genuine) if genuine else np.zeros(0, np.float32)
    imp = impostor_pairs(feats).max(axis=1) if len(feats) > 1 else np.zeros(0)
    return gen.astype(np.float64), imp.astype(np.float64)


def threshold_at_far(impostor: np.ndarray, target_far: float) -> float:
    """Lowest threshold t with mean(impostor >= t) <= target_far, clipped to [-1, 1]."""
    if impostor.size == 0:
        raise DataError("no impostor scores: at least two identities are needed")
    ordered = np.sort(impostor)[::-1]
    allowed = int(math.floor(target_far * ordered.size + 1e-9))
    if allowed >= ordered.size:
        return -1.0
    # just above the (allowed+1)-th highest score: at most ``allowed`` scores reach it. The
    # step is a float32 one so that comparisons in float32 (similarities are float32) and in
    # float64 agree on which scores pass.
    step = np.nextafter(np.float32(ordered[allowed]), np.float32(np.inf))
    return float(min(1.0, max(-1.0, float(step))))


def _check(feats: Sequence[np.ndarray], target_far: float) -> None:
    if not 0.0 < target_far < 1.0:
        raise InputError(f"target_far is a rate in (0, 1), e.g. 0.01; got {target_far}")
    if len(feats) < 2:
        raise DataError("a threshold from the enrolment images needs at least two identities "
                        "(impostor scores come from the other identities); enrol more "
                        "identities, or set the match threshold yourself (match_threshold; "
                        "`edge-resnet run --match-threshold`)")


def derive_threshold(feats: Sequence[np.ndarray], target_far: float,
                     require_resolved: bool = False) -> Tuple[float, Dict[str, Any]]:
    """(threshold, how it was derived) for unit-norm feature blocks, one per identity.

    See the module doc. ``require_resolved`` raises :class:`DataError` when ``target_far``
    is below the FAR the enrolment data can resolve, instead of warning.
    """
    _check(feats, target_far)
    identities = len(feats)
    rows = impostor_pairs(feats)
    pairs, best = rows.ravel(), rows.max(axis=1)
    genuine = enrolment_scores(feats)[0]
    resolution = identities / pairs.size
    resolved = target_far >= resolution
    if resolved:
        threshold = threshold_at_far(pairs, target_far / identities)
    else:
        threshold = threshold_at_far(pairs, 0.0)
    if not resolved and require_resolved:
        raise DataError(
            f"target_far {target_far:g} cannot be resolved from {pairs.size} impostor pairs "
            f"({int(sum(len(f) for f in feats))} images of {identities} identities): the "
            f"smallest FAR they can show is {resolution:.4g}; enrol more identities or photos, "
            "or ask for a target_far of at least that")
    fmr = float(np.mean(pairs >= threshold))
    info: Dict[str, Any] = {
        "method": "union bound over impostor pairs: FAR <= identities x FMR, FMR over every "
                  "enrolment image against every other identity's vector; genuine scores "
                  "leave-one-out",
        "target_far": target_far, "threshold": threshold, "identities": identities,
        "impostor_pairs": int(pairs.size), "pair_fmr": fmr,
        "far_bound": min(1.0, identities * fmr), "far_resolution": resolution,
        "resolved": resolved,
        "impostor_scores": int(best.size), "estimated_far": float(np.mean(best >= threshold)),
        "genuine_scores": int(genuine.size),
        "estimated_tar": float(np.mean(genuine >= threshold)) if genuine.size else None,
        "impostor_max": float(pairs.max()), "warnings": []}
    if not resolved:
        info["warnings"].append(
            f"target_far {target_far:g} is below what {pairs.size} impostor pairs of "
            f"{identities} identities can resolve ({resolution:.4g}): the threshold is just "
            "above the highest impostor score and strangers may pass more often than asked; "
            "enrol more identities or photos, or measure the rate with open-set evaluation")
    if not genuine.size:
        info["warnings"].append("one photo per identity: no genuine scores, so the true accept "
                                "rate at this threshold is unknown (measure it with open-set "
                                "evaluation)")
    return threshold, info
