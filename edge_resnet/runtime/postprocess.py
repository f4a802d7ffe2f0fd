"""Logits → what a user acts on: softmax, optional temporal smoothing, top-k with labels, threshold.

Smoothing averages class probabilities over the last N frames of the stream, which steadies
flickering labels from a camera at the cost of N/2 frames of lag. Below the threshold a frame
is reported as ``unknown`` instead of the most likely label, so downstream logic never acts on
a guess. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.core import InputError

__all__ = ["Classification", "Postprocessor", "softmax", "top_k", "UNKNOWN"]

UNKNOWN = "unknown"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probs: np.ndarray, k: int, labels: Sequence[str]) -> List[Dict[str, Any]]:
    """The k most likely classes of one probability vector, best first."""
    k = min(k, probs.shape[-1])
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    return [{"index": int(i), "label": labels[int(i)], "prob": float(probs[i])} for i in idx]


@dataclass
class Classification:
    """The result of one frame: top-k, the decided label (or ``unknown``) and its probability."""

    label: str
    prob: float
    topk: List[Dict[str, Any]]
    identity: Optional[str] = None
    similarity: Optional[float] = None
    candidate: Optional[str] = None          # best gallery match, also when ``unknown``
    match_threshold: Optional[float] = None  # the threshold the identity was decided with
    extra: Dict[str, Any] = field(default_factory=dict)


class Postprocessor:
    """Stateful per-stream post-processing (smoothing needs the previous frames)."""

    def __init__(self, labels: Sequence[str], k: int = 5, smoothing: int = 1,
                 threshold: float = 0.0) -> None:
        if k < 1:
            raise InputError(f"top_k={k}: must be >= 1 (classes per result)")
        if smoothing < 1:
            raise InputError(f"smoothing={smoothing}: must be >= 1 frame")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold={threshold}: must be a probability in [0, 1]")
        self.labels = tuple(labels)
        self.k = k
        self.threshold = threshold
        self._history: Deque[np.ndarray] = deque(maxlen=smoothing)

    def __call__(self, logits: np.ndarray) -> List[Classification]:
        """Post-process a batch of logits (frames in stream order)."""
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise InputError(f"logits of shape {logits.shape} do not match "
                             f"{len(self.labels)} labels")
        results = []
        for probs in softmax(logits):
            self._history.append(probs)
            smoothed = probs if len(self._history) == 1 else np.mean(self._history, axis=0)
            best = top_k(smoothed, self.k, self.labels)
            label = best[0]["label"] if best[0]["prob"] >= self.threshold else UNKNOWN
            results.append(Classification(label=label, prob=best[0]["prob"], topk=best))
        return results
