"""Accuracy gates: judge every candidate in an :class:`EvalReport` against the limits set.

Gates read only the report, so the library call, the CLI and CI judge the same numbers. Three
gates, any combination:

- ``max_drop``: the top-1 drop in points (point estimate); on unlabeled images the top-1
  disagreement in points, which bounds the drop;
- ``max_drop_upper``: the upper end of the drop's paired-bootstrap interval (labeled only), so
  a gate can demand "not worse, with 95 % confidence" rather than "not worse on this sample";
- ``min_agreement``: top-1 agreement with the reference in percent (labeled or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

from edge_resnet.core import InputError

if TYPE_CHECKING:  # report imports this module; the types are only needed for checking
    from edge_resnet.evaluation.report import EvalReport, ModelResult

__all__ = ["GateBreach", "apply_gates", "check_gates", "drop_confidence", "gate_line"]

_GATE_TEXT = {
    "max_drop": "top-1 drop {value:.2f} > {limit:g} points",
    "max_drop_disagreement": "top-1 disagreement {value:.2f} > {limit:g} points",
    "max_drop_upper": "top-1 drop {confidence:g} % upper bound {value:.2f} > {limit:g} points",
    "min_agreement": "top-1 agreement {value:.2f} % < {limit:g} %",
}


@dataclass(frozen=True)
class GateBreach:
    """One candidate failing one gate: ``gate`` is ``max_drop``, ``max_drop_upper`` or
    ``min_agreement``; ``value`` is what was measured, ``limit`` what the gate allows."""

    candidate: str
    gate: str
    value: float
    limit: float
    labeled: bool = True
    confidence: float = 95.0

    def __str__(self) -> str:
        key = self.gate if self.labeled or self.gate != "max_drop" else "max_drop_disagreement"
        text = _GATE_TEXT[key].format(value=self.value, limit=self.limit,
                                      confidence=self.confidence)
        return f"{self.candidate}: {text}"


def check_gates(labeled: bool, max_drop: Optional[float] = None,
                max_drop_upper: Optional[float] = None,
                min_agreement: Optional[float] = None) -> None:
    """Refuse gates that cannot be judged, before any image is run."""
    for what, value in (("max drop", max_drop), ("max drop upper bound", max_drop_upper)):
        if value is not None and not value >= 0:
            raise InputError(f"{what} must be >= 0 percentage points, got {value}")
    if min_agreement is not None and not 0.0 <= min_agreement <= 100.0:
        raise InputError(f"min agreement must be a percentage in [0, 100], got {min_agreement}")
    if max_drop_upper is not None and not labeled:
        raise InputError(
            "a gate on the upper bound of the drop needs labeled images (one subfolder per "
            "class); unlabeled images give agreement only: gate them with a max drop "
            "(judged on top-1 disagreement) or a min agreement")


def _candidate_breaches(cand: "ModelResult", labeled: bool, max_drop: Optional[float],
                        max_drop_upper: Optional[float],
                        min_agreement: Optional[float]) -> List[GateBreach]:
    agreement = 100.0 * cand.agreement.agreement if cand.agreement is not None else 0.0
    found: List[GateBreach] = []
    if max_drop is not None:
        value = (cand.drop_top1 or 0.0) if labeled else 100.0 - agreement
        if value > max_drop + 1e-9:
            found.append(GateBreach(cand.name, "max_drop", value, max_drop, labeled))
    if max_drop_upper is not None:
        if cand.paired is None:
            raise InputError(f"candidate {cand.name!r} has no paired top-1 statistics; "
                             "evaluate it on labeled images to gate the drop's upper bound")
        high = cand.paired.drop_high
        if high > max_drop_upper + 1e-9:
            found.append(GateBreach(cand.name, "max_drop_upper", high, max_drop_upper, labeled,
                                    100.0 * cand.paired.confidence))
    if min_agreement is not None and agreement < min_agreement - 1e-9:
        found.append(GateBreach(cand.name, "min_agreement", agreement, min_agreement, labeled))
    return found


def apply_gates(report: "EvalReport", *, max_drop: Optional[float] = None,
                max_drop_upper: Optional[float] = None,
                min_agreement: Optional[float] = None) -> "EvalReport":
    """Judge every candidate against the gates that are set and record the verdict in
    ``report`` (``gate_passed`` None when no gate is set); returns the same report.

    ``max_drop``: top-1 drop in points (on unlabeled data the top-1 disagreement, which bounds
    the drop); ``max_drop_upper``: upper end of the drop's bootstrap interval (labeled only);
    ``min_agreement``: top-1 agreement with the reference in percent.
    """
    check_gates(report.labeled, max_drop, max_drop_upper, min_agreement)
    report.max_drop, report.max_drop_upper = max_drop, max_drop_upper
    report.min_agreement = min_agreement
    report.gate_metric = None if max_drop is None else (
        "top1_drop" if report.labeled else "top1_disagreement")
    breaches: List[GateBreach] = []
    for cand in report.candidates:
        breaches += _candidate_breaches(cand, report.labeled, max_drop, max_drop_upper,
                                        min_agreement)
    report.gate_breaches = breaches
    report.gate_failures = [str(b) for b in breaches]
    gated = (max_drop, max_drop_upper, min_agreement) != (None, None, None)
    report.gate_passed = (not breaches) if gated else None
    return report


def drop_confidence(report: "EvalReport") -> float:
    """Confidence (percent) of the drop intervals in ``report`` (95 when there are none)."""
    paired = next((c.paired for c in report.candidates if c.paired is not None), None)
    return 100.0 * paired.confidence if paired is not None else 95.0


def gate_line(report: "EvalReport") -> str:
    """One line: which gates were set and the verdict naming every breach."""
    gates = []
    if report.max_drop is not None:
        what = ("top-1 drop" if report.labeled
                else "top-1 disagreement with the reference (unlabeled data; bounds the drop)")
        gates.append(f"{what} <= {report.max_drop:g} points")
    if report.max_drop_upper is not None:
        gates.append(f"drop {drop_confidence(report):g} % upper bound <= "
                     f"{report.max_drop_upper:g} points")
    if report.min_agreement is not None:
        gates.append(f"top-1 agreement >= {report.min_agreement:g} %")
    if not gates:
        return ("Gate: none (pass --max-drop, --max-drop-upper or --min-agreement to fail on "
                "an accuracy drop).")
    verdict = "PASSED" if report.gate_passed else "FAILED: " + "; ".join(report.gate_failures)
    return f"Gate: {', '.join(gates)} → {verdict}"
