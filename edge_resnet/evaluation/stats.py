"""Paired statistics of a candidate against the reference on the same images.

A top-1 drop measured on a few hundred images moves in steps of one image (0.28 points of 359),
so the point estimate alone cannot tell a real regression from noise. Because both models see
the *same* images, the comparison is paired: only the images where exactly one model is right
carry information. On them this module computes

- the exact McNemar test: a two-sided binomial test (p = 1/2) on the discordant pairs
  ``b`` (reference right, candidate wrong) and ``c`` (candidate right, reference wrong), in
  exact integer arithmetic; ``p`` near 1 means the difference is what chance gives;
- a paired-bootstrap interval of the drop: images are resampled with replacement and the
  drop recomputed. The drop of a resample depends only on how many ``b`` and ``c`` images it
  drew, so drawing n images is a multinomial draw of those counts: the same distribution as
  resampling indices, at O(1) cost per resample instead of O(n).

:func:`compare` is the one entry point for "how close is this candidate to the reference":
agreement statistics always, paired top-1 statistics when labels are known. Evaluation,
calibration method scoring (agreement, KL) and FP16 checks can all use it. Device side:
Python 3.8, numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from edge_resnet.core import InputError
from edge_resnet.evaluation.metrics import (AgreementStats, DiffHistogram, abs_diff_histogram,
                                            agreement_stats, topk_correct)

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "Comparison", "PairedTop1",
           "bootstrap_drop_interval", "compare", "mcnemar_exact", "paired_top1"]

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` and ``c`` discordant pairs.

    Under "both models are equally accurate" each discordant image is a fair coin, so
    ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``. Summed with
    Python integers and divided once, so it is exact up to the final rounding to float, for
    any count (no normal approximation, no overflow, no loss in the tail).
    """
    if int(b) != b or int(c) != c or b < 0 or c < 0:
        raise InputError(f"discordant counts must be non-negative integers, got b={b}, c={c}")
    b, c = int(b), int(c)
    n = b + c
    k = min(b, c)
    if 2 * k == n:  # b == c (including no discordant pair at all): nothing to explain
        return 1.0
    term = total = 1  # C(n, 0)
    for i in range(k):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        total += term
    return min(1.0, (2 * total) / (1 << n))


def _check_interval_options(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if resamples < 1:
        raise InputError(f"bootstrap resamples must be >= 1, got {resamples}")


def bootstrap_drop_interval(samples: int, reference_only: int, candidate_only: int, *,
                            confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = BOOTSTRAP_SEED) -> Tuple[float, float]:
    """Percentile paired-bootstrap interval (points) of the top-1 drop.

    ``samples`` images of which ``reference_only`` only the reference got right and
    ``candidate_only`` only the candidate. Deterministic for a given ``seed``.
    """
    _check_interval_options(confidence, resamples)
    if samples < 1 or reference_only < 0 or candidate_only < 0 \
            or reference_only + candidate_only > samples:
        raise InputError(f"need 0 <= reference_only + candidate_only <= samples, got "
                         f"{reference_only} + {candidate_only} of {samples}")
    rng = np.random.Generator(np.random.PCG64(seed))
    shares = [reference_only / samples, candidate_only / samples,
              1.0 - (reference_only + candidate_only) / samples]
    draws = rng.multinomial(samples, shares, size=resamples)
    drops = 100.0 * (draws[:, 0] - draws[:, 1]) / samples
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(drops, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTop1:
    """Top-1 of reference and candidate on the same labeled images, and how sure the drop is.

    ``drop`` and the interval are percentage points (reference minus candidate: positive is
    worse, negative is a gain). ``reference_only``/``candidate_only`` are McNemar's ``b``/``c``.
    """

    samples: int
    reference_correct: int
    candidate_correct: int
    reference_only: int
    candidate_only: int
    drop: float
    mcnemar_p: float
    drop_low: float
    drop_high: float
    confidence: float
    resamples: int
    seed: int

    @property
    def discordant(self) -> int:
        """Images where exactly one of the two models is right."""
        return self.reference_only + self.candidate_only

    def to_dict(self) -> Dict[str, object]:
        return dict(asdict(self), discordant=self.discordant)


def _as_correct(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype != np.bool_:
        raise InputError(f"{name} must be a 1-D boolean array (one entry per image), "
                         f"got {array.dtype} of shape {array.shape}")
    return array


def paired_top1(reference_correct: np.ndarray, candidate_correct: np.ndarray, *,
                confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> PairedTop1:
    """Paired statistics from per-image correctness (True where the model's top-1 is right)."""
    ref = _as_correct(reference_correct, "reference_correct")
    cand = _as_correct(candidate_correct, "candidate_correct")
    if ref.shape != cand.shape:
        raise InputError(f"reference ({ref.size}) and candidate ({cand.size}) correctness "
                         "differ in length; both models must see the same images")
    if ref.size == 0:
        raise InputError("cannot compare models on zero samples")
    n = int(ref.size)
    b = int((ref & ~cand).sum())
    c = int((cand & ~ref).sum())
    low, high = bootstrap_drop_interval(n, b, c, confidence=confidence, resamples=resamples,
                                        seed=seed)
    return PairedTop1(
        samples=n, reference_correct=int(ref.sum()), candidate_correct=int(cand.sum()),
        reference_only=b, candidate_only=c, drop=100.0 * (b - c) / n,
        mcnemar_p=mcnemar_exact(b, c), drop_low=low, drop_high=high,
        confidence=confidence, resamples=resamples, seed=seed)


@dataclass(frozen=True)
class Comparison:
    """Everything known about a candidate against the reference on the same images.

    ``top1`` is None on unlabeled images: without labels only agreement can be measured.
    """

    agreement: AgreementStats
    top1: Optional[PairedTop1]
    logit_diff: DiffHistogram

    @property
    def samples(self) -> int:
        return self.agreement.samples

    @property
    def disagreements(self) -> int:
        """Images whose top-1 prediction changed (right or wrong alike)."""
        return self.agreement.disagreements


def compare(reference: np.ndarray, candidate: np.ndarray,
            labels: Optional[np.ndarray] = None, *, confidence: float = CONFIDENCE,
            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """Compare candidate logits with reference logits (samples x classes) image by image."""
    _check_interval_options(confidence, resamples)
    stats = agreement_stats(reference, candidate)
    top1 = None
    if labels is not None:
        top1 = paired_top1(topk_correct(reference, labels, 1), topk_correct(candidate, labels, 1),
                           confidence=confidence, resamples=resamples, seed=seed)
    return Comparison(agreement=stats, top1=top1,
                      logit_diff=abs_diff_histogram(reference, candidate))
