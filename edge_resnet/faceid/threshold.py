"""The match threshold from the enrolment images alone, chosen for a target false accept rate.

Why not "genuine vs impostor at the best split" over gallery means that contain the image
being scored: with one photo per person each image is then compared with itself (similarity
1.0), and the threshold came out as exactly 1.0, so nobody was ever matched. Here:

* **impostor** scores: every enrolment image plays a stranger to the *other* identities: its
  best similarity to another identity's gallery vector (open-set identification: a stranger
  is accepted when *any* enrolled identity matches). They alone fix the false accept rate, so
  one photo per identity is enough to set a threshold.
* **genuine** scores, leave-one-out: each image against the mean of the *other* images of its
  identity (identities with at least two images). They estimate the true accept rate at the
  chosen threshold; with one photo per identity there are none, and the record says so.

The threshold is the lowest value at which at most ``target_far`` of the impostor scores are
accepted. With N impostor scores no FAR below 1/N can be measured; then the threshold sits just
above the highest impostor score and the record carries the resolution and a warning.
Device side: Python 3.8, numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from edge_resnet.core import DataError, InputError

__all__ = ["derive_threshold", "enrolment_scores", "threshold_at_far", "unit_rows"]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def enrolment_scores(feats: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of unit-norm per-identity feature blocks (see module doc)."""
    centres = unit_rows(np.stack([f.mean(axis=0) for f in feats]))
    genuine: List[np.ndarray] = []
    impostor: List[np.ndarray] = []
    for i, block in enumerate(feats):
        n = len(block)
        if n >= 2:  # leave-one-out mean of the other images of this identity
            others = unit_rows((block.sum(axis=0, keepdims=True) - block) / (n - 1))
            genuine.append(np.einsum("ij,ij->i", block, others))
        if len(centres) > 1:
            impostor.append(np.delete(block @ centres.T, i, axis=1).max(axis=1))
    gen = np.concatenate(genuine) if genuine else np.zeros(0, np.float32)
    imp = np.concatenate(impostor) if impostor else np.zeros(0, np.float32)
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


def derive_threshold(feats: Sequence[np.ndarray], target_far: float
                     ) -> Tuple[float, Dict[str, Any]]:
    """(threshold, how it was derived) for unit-norm feature blocks, one per identity."""
    if not 0.0 < target_far < 1.0:
        raise InputError(f"--target-far is a rate in (0, 1), e.g. 0.01; got {target_far}")
    if len(feats) < 2:
        raise DataError("a threshold from the enrolment images needs at least two identities "
                        "(impostor scores come from the other identities); enrol more "
                        "identities or pass --match-threshold to `edge-resnet run`")
    genuine, impostor = enrolment_scores(feats)
    threshold = threshold_at_far(impostor, target_far)
    est_far = float(np.mean(impostor >= threshold))
    info: Dict[str, Any] = {
        "method": "impostor quantile: each enrolment image against the other identities' "
                  "vectors (best match); genuine scores leave-one-out",
        "target_far": target_far, "threshold": threshold,
        "impostor_scores": int(impostor.size), "far_resolution": 1.0 / impostor.size,
        "estimated_far": est_far, "genuine_scores": int(genuine.size),
        "estimated_tar": float(np.mean(genuine >= threshold)) if genuine.size else None,
        "impostor_max": float(impostor.max()), "warnings": []}
    if target_far < 1.0 / impostor.size:
        info["warnings"].append(
            f"only {impostor.size} impostor scores: a FAR below {1.0 / impostor.size:.4g} "
            "cannot be measured, so the threshold is just above the highest impostor score; "
            "enrol more identities (or more photos) for a finer estimate")
    if not genuine.size:
        info["warnings"].append("one photo per identity: no genuine scores, so the true accept "
                                "rate at this threshold is unknown (measure it with "
                                "`edge-resnet gallery eval`)")
    return threshold, info
