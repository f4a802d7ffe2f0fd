"""Open-set identification, measured honestly: TAR at a fixed FAR over strangers.

Protocol (per draw): for every identity, ``photos`` images picked at random are enrolled (their
normalised mean is the gallery vector) and the remaining images are probes. Each probe is
scored twice:

* **mated**: against the full gallery; it counts as a true accept at threshold t when its best
  match is its own identity *and* that similarity is >= t (detection and identification);
* **non-mated**: against the gallery without its own identity (every identity plays the
  stranger in turn); its best similarity is a false accept at t when >= t.

The threshold for a FAR is the lowest one at which at most that fraction of non-mated scores is
accepted (:func:`edge_resnet.faceid.threshold.threshold_at_far`); TAR is read at that
threshold. Draws are repeated with different seeds and their scores pooled. A FAR below
1 / (number of non-mated scores) cannot be measured and is reported as such.
Device side: Python 3.8, numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.core import DataError, InputError
from edge_resnet.faceid.threshold import derive_threshold, threshold_at_far, unit_rows

__all__ = ["OpenSetScores", "ROC_FARS", "enrolment_threshold_trials", "evaluate_open_set",
           "format_report", "open_set_scores", "report", "roc_curve", "tar_at_far"]

ROC_FARS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


@dataclass
class OpenSetScores:
    """Pooled scores of one enrolment size: mated similarity + correct-identity flag per mated
    probe, best similarity per non-mated probe."""

    photos: int
    mated: np.ndarray
    correct: np.ndarray
    nonmated: np.ndarray
    identities: int
    draws: int
    skipped_identities: List[str] = field(default_factory=list)


def _draw(labels: np.ndarray, photos: int, rng: np.random.Generator, usable: np.ndarray
          ) -> Tuple[np.ndarray, np.ndarray]:
    """(enrolment indices, probe indices) of one draw over the usable identities."""
    enrol: List[int] = []
    probe: List[int] = []
    for ident in usable:
        idx = np.flatnonzero(labels == ident)
        picked = rng.permutation(idx)
        enrol.extend(picked[:photos].tolist())
        probe.extend(picked[photos:].tolist())
    return np.array(enrol), np.array(probe)


def open_set_scores(feats: np.ndarray, labels: np.ndarray, enrol: np.ndarray, probe: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mated similarity, correct flag, non-mated best similarity) of each probe."""
    idents = np.unique(labels[enrol])
    centres = unit_rows(np.stack([feats[enrol][labels[enrol] == i].mean(axis=0)
                                  for i in idents]))
    sims = feats[probe] @ centres.T
    own = np.searchsorted(idents, labels[probe])
    rows = np.arange(len(probe))
    mated = sims[rows, own]
    correct = sims.argmax(axis=1) == own
    others = sims.copy()
    others[rows, own] = -np.inf
    return mated.astype(np.float64), correct, others.max(axis=1).astype(np.float64)


def tar_at_far(scores: OpenSetScores, far: float) -> Dict[str, Any]:
    """Threshold and TAR at ``far``, with the FAR actually reached and whether it is resolvable."""
    threshold = threshold_at_far(scores.nonmated, far)
    accepted = scores.correct & (scores.mated >= threshold)
    return {"far": far, "threshold": threshold, "tar": float(accepted.mean()),
            "far_reached": float(np.mean(scores.nonmated >= threshold)),
            "measurable": far >= 1.0 / scores.nonmated.size}


def roc_curve(scores: OpenSetScores, points: int = 60) -> List[Tuple[float, float]]:
    """(FAR, TAR) pairs from the lowest measurable FAR to 1, log-spaced, for plots."""
    lowest = 1.0 / scores.nonmated.size
    fars = np.unique(np.geomspace(lowest, 1.0, points))
    return [(float(f), tar_at_far(scores, float(f))["tar"]) for f in fars if f < 1.0]


def evaluate_open_set(feats: np.ndarray, labels: np.ndarray, names: Sequence[str],
                      photos: Sequence[int] = (1, 5), draws: int = 5, seed: int = 0
                      ) -> List[OpenSetScores]:
    """Pooled open-set scores per enrolment size (see the module doc) of unit-norm ``feats``.

    ``labels[i]`` indexes ``names``. Identities with fewer than ``photos + 1`` images cannot
    give a probe and are left out of that size (named in ``skipped_identities``).
    """
    if feats.ndim != 2 or len(feats) != len(labels):
        raise InputError(f"{len(labels)} labels for features of shape {feats.shape}")
    if draws < 1 or not photos or min(photos) < 1:
        raise InputError("need draws >= 1 and enrolment sizes >= 1")
    counts = np.bincount(labels, minlength=len(names))
    out = []
    for k in photos:
        usable = np.flatnonzero(counts > k)
        if len(usable) < 2:
            raise DataError(f"{k} enrolment photo(s): fewer than two identities have {k + 1} "
                            "images or more (one probe each is needed); add images or give "
                            "fewer photos")
        pooled: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for d in range(draws):
            rng = np.random.default_rng([seed, k, d])
            pooled.append(open_set_scores(feats, labels, *_draw(labels, k, rng, usable)))
        out.append(OpenSetScores(
            photos=k, mated=np.concatenate([p[0] for p in pooled]),
            correct=np.concatenate([p[1] for p in pooled]),
            nonmated=np.concatenate([p[2] for p in pooled]), identities=len(usable), draws=draws,
            skipped_identities=[names[int(i)] for i in np.flatnonzero(counts <= k)]))
    return out


def report(scores: Sequence[OpenSetScores], fars: Sequence[float] = (0.01, 0.001),
           model: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A JSON-able report: TAR at each asked FAR and an ROC table per enrolment size."""
    sizes = []
    for s in scores:
        sizes.append({"photos": s.photos, "identities": s.identities, "draws": s.draws,
                      "mated_probes": int(s.mated.size), "nonmated_probes": int(s.nonmated.size),
                      "rank1": float(s.correct.mean()),
                      "skipped_identities": s.skipped_identities,
                      "tar_at_far": [tar_at_far(s, f) for f in fars],
                      "roc": [tar_at_far(s, f) for f in ROC_FARS],
                      "curve": roc_curve(s)})
    return {"protocol": "open-set identification; non-mated = each probe against the gallery "
                        "without its own identity", "model": model or {}, "sizes": sizes}


def format_report(rep: Dict[str, Any]) -> str:
    """Markdown: TAR at the asked FARs, then the ROC table (``-`` where FAR is not measurable)."""
    lines = ["| photos/identity | identities | probes (mated/non-mated) | rank-1 | "
             + " | ".join(f"TAR@FAR {t['far']:g}" for t in rep["sizes"][0]["tar_at_far"]) + " |",
             "|---|---|---|---|" + "---|" * len(rep["sizes"][0]["tar_at_far"])]
    for s in rep["sizes"]:
        cells = [f"{t['tar']:.3f} (t={t['threshold']:.3f})" if t["measurable"] else "-"
                 for t in s["tar_at_far"]]
        lines.append(f"| {s['photos']} | {s['identities']} | {s['mated_probes']}/"
                     f"{s['nonmated_probes']} | {s['rank1']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "ROC: TAR at FAR", "| FAR | " + " | ".join(
        f"{s['photos']} photo(s)" for s in rep["sizes"]) + " |",
        "|---|" + "---|" * len(rep["sizes"])]
    for i, far in enumerate(ROC_FARS):
        cells = [f"{s['roc'][i]['tar']:.3f}" if s["roc"][i]["measurable"] else "-"
                 for s in rep["sizes"]]
        lines.append(f"| {far:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def enrolment_threshold_trials(feats: np.ndarray, labels: np.ndarray, photos: int,
                               draws: int = 5, seed: int = 0, target_far: float = 0.01
                               ) -> List[Dict[str, Any]]:
    """How the enrolment threshold holds on strangers, one dict per draw.

    Each draw enrols ``photos`` images per identity (as :func:`evaluate_open_set` does), derives
    the threshold from those images alone (:func:`edge_resnet.faceid.threshold.derive_threshold`)
    and reads, on the other images, the FAR actually realised by non-mated probes (each against
    the gallery without its own identity) and the TAR of mated probes. For comparison it also
    gives the threshold of the earlier rule (each enrolment image's best impostor score, FAR
    quantile) and the FAR that one realises.
    """
    counts = np.bincount(labels)
    usable = np.flatnonzero(counts > photos)
    if len(usable) < 2:
        raise DataError(f"{photos} enrolment photo(s): fewer than two identities have "
                        f"{photos + 1} images or more")
    trials = []
    for d in range(draws):
        enrol, probe = _draw(labels, photos, np.random.default_rng([seed, photos, d]), usable)
        blocks = [feats[enrol][labels[enrol] == i] for i in usable]
        threshold, info = derive_threshold(blocks, target_far)
        mated, correct, nonmated = open_set_scores(feats, labels, enrol, probe)
        best_rule = threshold_at_far(np.concatenate([
            np.delete(b @ unit_rows(np.stack([x.mean(axis=0) for x in blocks])).T, i, axis=1)
            .max(axis=1) for i, b in enumerate(blocks)]), target_far)
        trials.append({
            "draw": d, "threshold": threshold, "resolved": info["resolved"],
            "far_resolution": info["far_resolution"],
            "far": float(np.mean(nonmated >= threshold)),
            "tar": float(np.mean(correct & (mated >= threshold))),
            "best_match_rule_threshold": best_rule,
            "best_match_rule_far": float(np.mean(nonmated >= best_rule)),
            "best_match_rule_tar": float(np.mean(correct & (mated >= best_rule)))})
    return trials
