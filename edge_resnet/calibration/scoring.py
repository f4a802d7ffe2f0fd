"""Choosing the range method by measurement (``--method auto``).

Which range method quantizes a given model best is an empirical question: entropy wins on one
network, percentile or mse on another, and a method ranking published for ImageNet says little
about a user's 10-class model. So the calibration sample is split once: every
``HOLDOUT_EVERY``-th image is held out and never enters the statistics; after the one
statistics pass every candidate method's QDQ model runs on the held-out images, and the method
whose top-1 agrees most often with FP32 wins (ties: the lower mean KL divergence of the
softmax outputs, a continuous signal that separates methods a few hundred images cannot).
The split is by position in the sample, so folders, videos and list files split the same way,
and the statistics (from the other images) do not depend on which methods are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Sequence

import numpy as np

from edge_resnet.core import InputError

__all__ = ["HOLDOUT_EVERY", "HoldoutSplit", "MethodScore", "choose_method", "score_methods"]

HOLDOUT_EVERY = 5  # 20 % of the calibration sample scores the methods, 80 % feeds statistics


class HoldoutSplit:
    """Iterate ``batches`` minus every ``every``-th image; those are kept in :attr:`held`."""

    def __init__(self, batches: Iterable[np.ndarray], every: int = HOLDOUT_EVERY) -> None:
        if every < 2:
            raise InputError(f"hold-out period must be >= 2, got {every}")
        self.batches = batches
        self.every = every
        self.held: List[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        seen = 0
        for batch in self.batches:
            position = np.arange(seen, seen + len(batch))
            seen += len(batch)
            held = position % self.every == self.every - 1
            if held.any():
                self.held.append(batch[held])  # boolean indexing copies: no view of the batch
            if not held.all():
                yield batch[~held]

    @property
    def held_images(self) -> int:
        return sum(len(b) for b in self.held)

    def held_batches(self, batch_size: int) -> List[np.ndarray]:
        """The held-out images regrouped into batches of ``batch_size``."""
        if not self.held:
            return []
        images = np.concatenate(self.held)
        return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


@dataclass
class MethodScore:
    """How one method's INT8 model agrees with FP32 on the held-out calibration images."""

    method: str
    agreement: float  # top-1 agreement with FP32, percent
    kl: float  # mean KL(FP32 || INT8) of the softmax outputs, nats
    images: int


def score_methods(fp32_model: "object", qdq_models: Mapping[str, "object"],
                  batches: Sequence[np.ndarray], threads: int = 0) -> Dict[str, MethodScore]:
    """Score every candidate on ``batches`` against the FP32 model's own predictions (the one
    comparator, :func:`~edge_resnet.evaluation.comparator.compare_backends`; Q/DQ run as
    written, the arithmetic TensorRT reproduces)."""
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.evaluation.comparator import compare_backends

    if not batches:
        raise InputError("no held-out calibration images to score the range methods on")
    reference = OnnxRuntimeBackend(fp32_model, threads=threads)
    candidates = {m: OnnxRuntimeBackend(q, threads=threads, exact_qdq=True)
                  for m, q in qdq_models.items()}
    try:
        compared = compare_backends(reference, candidates, batches)
    finally:
        for backend in [reference, *candidates.values()]:
            backend.close()
    return {m: MethodScore(m, 100.0 * c.agreement.agreement, c.agreement.kl_mean, c.samples)
            for m, c in compared.items()}


def choose_method(scores: Mapping[str, MethodScore]) -> str:
    """Highest agreement, then lowest KL, then the name (deterministic on exact ties)."""
    if not scores:
        raise InputError("no range method was scored")
    return min(scores.values(), key=lambda s: (-s.agreement, s.kl, s.method)).method
