"""Accuracy and reference-agreement maths on logits, in plain numpy.

Evaluation compares a candidate (FP16, INT8, a TensorRT engine) with the FP32 reference on the
same images. Accuracy alone hides regressions that happen to cancel out, so the per-sample
agreement (top-1 agreement, logit cosine, KL divergence of the softmaxes) is computed too.
Everything works in float64 with log-softmax so that large logits neither overflow nor lose the
small probabilities KL depends on. Device side: Python 3.8, numpy only.

Ties: a class ranks above another when its logit is larger, or equal with a smaller index; this
is what ``np.argmax`` does, so top-1 from :func:`topk_correct` always equals ``argmax``.
Rows with a NaN or infinite logit never count as correct, never agree with the reference, have
cosine 0 and KL ``inf``: a candidate that overflows (FP16) must fail loudly, not look fine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from edge_resnet.core import InputError

__all__ = [
    "AgreementStats",
    "DiffHistogram",
    "abs_diff_histogram",
    "agreement_stats",
    "cosine_similarity",
    "kl_divergence",
    "log_softmax",
    "max_abs_diff",
    "per_class_accuracy",
    "percentile",
    "softmax",
    "top1_agreement",
    "topk_accuracy",
    "topk_correct",
]


def _as_logits(logits: np.ndarray, name: str = "logits") -> np.ndarray:
    array = np.asarray(logits)
    if array.ndim != 2 or array.shape[1] == 0:
        raise InputError(f"{name} must be a 2-D array (samples x classes), got shape {array.shape}")
    return array.astype(np.float64, copy=False)


def _as_pair(reference: np.ndarray, candidate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    ref = _as_logits(reference, "reference logits")
    cand = _as_logits(candidate, "candidate logits")
    if ref.shape != cand.shape:
        raise InputError(
            f"reference logits {ref.shape} and candidate logits {cand.shape} differ in shape; "
            "both models must see the same images and have the same classes")
    return ref, cand


def _finite_rows(logits: np.ndarray) -> np.ndarray:
    return np.isfinite(logits).all(axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, stable for any finite logits (max subtracted before exp)."""
    x = _as_logits(logits)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities (float64)."""
    return np.exp(log_softmax(logits))


def _labels(labels: np.ndarray, num_rows: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.shape != (num_rows,):
        raise InputError(f"labels must have shape ({num_rows},), got {array.shape}")
    return array.astype(np.int64, copy=False)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Boolean per sample: is the true label among the ``k`` highest logits?

    ``k`` larger than the number of classes means every finite row is correct.
    """
    x = _as_logits(logits)
    y = _labels(labels, x.shape[0])
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise InputError(f"labels must be in [0, {x.shape[1]}); got {y.min()}..{y.max()}")
    rows = np.arange(x.shape[0])
    own = x[rows, y][:, None]
    index = np.arange(x.shape[1])[None, :]
    rank = (x > own).sum(axis=1) + ((x == own) & (index < y[:, None])).sum(axis=1)
    return (rank < k) & _finite_rows(x)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction (0..1) of samples whose label is in the top ``k``; 0.0 for no samples."""
    correct = topk_correct(logits, labels, k)
    return float(correct.mean()) if correct.size else 0.0


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray,
                       num_classes: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(top-1 correct count, sample count) per class, each an int array of ``num_classes``.

    Counts rather than ratios, so that classes absent from the data stay visible (count 0)
    instead of turning into NaN.
    """
    x = _as_logits(logits)
    y = _labels(labels, x.shape[0])
    n = x.shape[1] if num_classes is None else num_classes
    correct = topk_correct(x, y, 1)
    totals = np.bincount(y, minlength=n)[:n]
    hits = np.bincount(y[correct], minlength=n)[:n]
    return hits.astype(np.int64), totals.astype(np.int64)


def _top1(logits: np.ndarray) -> np.ndarray:
    return np.where(_finite_rows(logits), logits.argmax(axis=1), -1)


def _same_top1(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    return (_top1(ref) == _top1(cand)) & _finite_rows(ref) & _finite_rows(cand)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction (0..1) of samples where both models predict the same class."""
    ref, cand = _as_pair(reference, candidate)
    if ref.shape[0] == 0:
        return 0.0
    return float(_same_top1(ref, cand).mean())


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-sample cosine of the two logit vectors.

    Two all-zero rows count as identical (1.0); one all-zero row against a non-zero one is 0.0.
    """
    ref, cand = _as_pair(reference, candidate)
    finite = _finite_rows(ref) & _finite_rows(cand)
    ref = np.where(finite[:, None], ref, 0.0)
    cand = np.where(finite[:, None], cand, 0.0)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = (ref * cand).sum(axis=1)
    both_zero = (np.abs(ref).sum(axis=1) == 0) & (np.abs(cand).sum(axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    cos = np.where(both_zero, 1.0, np.clip(cos, -1.0, 1.0))
    return np.where(finite, cos, 0.0)


def kl_divergence(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-sample KL(softmax(reference) || softmax(candidate)) in nats (>= 0)."""
    ref, cand = _as_pair(reference, candidate)
    finite = _finite_rows(ref) & _finite_rows(cand)
    log_p = log_softmax(np.where(finite[:, None], ref, 0.0))
    log_q = log_softmax(np.where(finite[:, None], cand, 0.0))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)
    return np.where(finite, np.maximum(kl, 0.0), np.inf)


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute logit difference over all samples and classes (``inf`` if non-finite)."""
    ref, cand = _as_pair(reference, candidate)
    if ref.size == 0:
        return 0.0
    diff = np.abs(ref - cand)
    return float(np.inf) if not np.isfinite(diff).all() else float(diff.max())


def percentile(values: np.ndarray, q: float) -> float:
    """Linear-interpolated percentile (numpy's default) that stays ``inf`` instead of NaN when
    the neighbouring values are infinite (``np.percentile`` gives ``inf - inf = nan``)."""
    data = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if data.size == 0:
        raise InputError("percentile of an empty array")
    pos = (data.size - 1) * q / 100.0
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    if lo == hi or data[lo] == data[hi]:
        return float(data[lo])
    if not np.isfinite(data[hi]):
        return float(data[hi])
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


@dataclass(frozen=True)
class AgreementStats:
    """How closely a candidate's logits follow the reference's, per sample then summarised."""

    samples: int
    agreement: float
    disagreements: int
    cosine_mean: float
    cosine_min: float
    cosine_p5: float
    kl_mean: float
    kl_max: float
    kl_p95: float
    max_abs_logit_diff: float
    nonfinite_samples: int

    def to_dict(self) -> Dict[str, object]:
        """Plain dict; infinities become None so the JSON stays standard."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def agreement_stats(reference: np.ndarray, candidate: np.ndarray) -> AgreementStats:
    """All agreement statistics of ``candidate`` against ``reference`` in one pass."""
    ref, cand = _as_pair(reference, candidate)
    if ref.shape[0] == 0:
        raise InputError("cannot compare models on zero samples")
    cos = cosine_similarity(ref, cand)
    kl = kl_divergence(ref, cand)
    same = _same_top1(ref, cand)
    return AgreementStats(
        samples=int(ref.shape[0]),
        agreement=float(same.mean()),
        disagreements=int((~same).sum()),
        cosine_mean=float(cos.mean()),
        cosine_min=float(cos.min()),
        cosine_p5=percentile(cos, 5),
        kl_mean=float(kl.mean()),
        kl_max=float(kl.max()),
        kl_p95=percentile(kl, 95),
        max_abs_logit_diff=max_abs_diff(ref, cand),
        nonfinite_samples=int((~(_finite_rows(ref) & _finite_rows(cand))).sum()),
    )


# |Δlogit| bins: an underflow bin [0, 1e-7), quarter-decades from 1e-7 to 1e3, an overflow bin
# [1e3, inf). Fixed edges make histograms of different candidates and runs comparable, and
# cover FP16 rounding (~1e-3) up to a broken INT8 layer (~10..100) alike.
DIFF_EDGES: Tuple[float, ...] = (0.0,) + tuple(float(10.0 ** (e / 4.0)) for e in range(-28, 13))


@dataclass(frozen=True)
class DiffHistogram:
    """Counts of |candidate - reference| over every logit of every sample.

    ``counts[i]`` holds values in ``[edges[i], edges[i + 1])``, the last bin is open
    (``[edges[-1], inf)``); non-finite differences are counted apart. Small enough to keep in
    the JSON report, so plots can be redrawn from it without the logits.
    """

    edges: Tuple[float, ...]
    counts: Tuple[int, ...]
    nonfinite: int

    @property
    def total(self) -> int:
        return int(sum(self.counts)) + self.nonfinite

    def to_dict(self) -> Dict[str, object]:
        return {"edges": list(self.edges), "counts": list(self.counts),
                "nonfinite": self.nonfinite}


def abs_diff_histogram(reference: np.ndarray, candidate: np.ndarray,
                       chunk_rows: int = 4096) -> DiffHistogram:
    """Histogram of |Δlogit| on :data:`DIFF_EDGES`, computed ``chunk_rows`` rows at a time so a
    50,000 x 1,000 evaluation does not need another full-size float64 array."""
    ref, cand = _as_pair(reference, candidate)
    edges = np.asarray(DIFF_EDGES)
    counts = np.zeros(len(DIFF_EDGES), np.int64)
    nonfinite = 0
    for start in range(0, ref.shape[0], chunk_rows):
        diff = np.abs(ref[start:start + chunk_rows] - cand[start:start + chunk_rows]).ravel()
        finite = np.isfinite(diff)
        nonfinite += int((~finite).sum())
        bins = np.searchsorted(edges, diff[finite], side="right") - 1
        counts += np.bincount(bins, minlength=len(edges))
    out: List[int] = counts.tolist()
    return DiffHistogram(edges=DIFF_EDGES, counts=tuple(out), nonfinite=nonfinite)
