"""The evaluation report: one typed result per model, rendered to JSON (machines, CI) and Markdown
(people, PR comments), written atomically.

Accuracies are percentages, drops are percentage points (reference minus candidate, positive is
worse), agreement statistics compare each candidate's logits with the reference's per image.
Counts are kept next to the percentages so numbers can be re-derived exactly, and every drop
comes with its paired statistics (exact McNemar p, bootstrap interval: see ``stats``) so a
reader can tell a real regression from the noise of a small test set.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edge_resnet.evaluation.gates import GateBreach, drop_confidence, gate_line
from edge_resnet.evaluation.metrics import AgreementStats, DiffHistogram
from edge_resnet.evaluation.stats import PairedTop1
from edge_resnet.io_utils import atomic_write_json, atomic_write_text

__all__ = ["EvalReport", "ModelResult", "class_order", "render_markdown", "report_paths",
           "statistics_note", "summary_table", "write_report"]

_MAX_CLASS_ROWS = 30  # larger label sets show only the classes that dropped most
_MAX_SKIPPED_SHOWN = 5


@dataclass
class ModelResult:
    """One model's numbers on the evaluated images (the reference has no drop/agreement)."""

    name: str
    model_path: str
    backend: str
    precision: str
    device: str
    infer_seconds: float
    top1: Optional[float] = None
    top5: Optional[float] = None
    top1_correct: Optional[int] = None
    top5_correct: Optional[int] = None
    drop_top1: Optional[float] = None
    drop_top5: Optional[float] = None
    agreement: Optional[AgreementStats] = None
    per_class_correct: Optional[List[int]] = None
    paired: Optional[PairedTop1] = None
    logit_diff: Optional[DiffHistogram] = None
    backend_reason: str = ""

    def to_dict(self) -> Dict[str, Any]:
        nested = ("agreement", "paired", "logit_diff")
        data = {k: v for k, v in self.__dict__.items() if k not in nested}
        for key in nested:
            value = getattr(self, key)
            data[key] = value.to_dict() if value is not None else None
        return data


@dataclass
class EvalReport:
    """Everything ``edge-resnet eval`` measured; ``gate_passed`` is None when no gate was set.

    On unlabeled data the gate compares ``max_drop`` with the top-1 *disagreement* in points:
    the accuracy drop can never exceed the share of images whose prediction changed, so this is
    a conservative bound (``gate_metric`` says which was used).
    """

    data_dir: str
    labeled: bool
    labels: Tuple[str, ...]
    files_considered: int
    images_evaluated: int
    skipped: Dict[str, str]
    reference: ModelResult
    candidates: List[ModelResult]
    class_counts: Optional[List[int]] = None
    max_drop: Optional[float] = None
    max_drop_upper: Optional[float] = None
    min_agreement: Optional[float] = None
    gate_metric: Optional[str] = None
    gate_passed: Optional[bool] = None
    gate_failures: List[str] = field(default_factory=list)
    gate_breaches: List[GateBreach] = field(default_factory=list)
    plots: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    batch_size: int = 0
    num_images: Optional[int] = None
    seed: int = 0

    @property
    def models(self) -> List[ModelResult]:
        return [self.reference] + list(self.candidates)

    def candidate(self, name: str) -> ModelResult:
        """The candidate called ``name`` (KeyError naming the known ones otherwise)."""
        for result in self.candidates:
            if result.name == name:
                return result
        raise KeyError(f"no candidate {name!r}; have {[c.name for c in self.candidates]}")

    @property
    def images_per_second(self) -> float:
        """Whole evaluation throughput: decode + preprocess + every model, per image."""
        return self.images_evaluated / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("reference", "candidates")}
        data["gate_breaches"] = [asdict(b) for b in self.gate_breaches]
        data["labels"] = list(self.labels)
        data["reference"] = self.reference.to_dict()
        data["candidates"] = [c.to_dict() for c in self.candidates]
        data["images_per_second"] = self.images_per_second
        return _json_safe(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_markdown(self, link_base: "str | Path | None" = None) -> str:
        return render_markdown(self, link_base)


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None: standard JSON has no NaN/Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value: Optional[float], digits: int = 2) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "inf" if value > 0 else str(value)
    return f"{value:.{digits}f}"


def _sci(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "inf"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"


def _ci(paired: Optional[PairedTop1]) -> str:
    return f"{paired.drop_low:+.2f} … {paired.drop_high:+.2f}" if paired else "—"


def _row(result: ModelResult, reference: bool, images: int) -> List[str]:
    stats, paired = result.agreement, result.paired
    rate = images / result.infer_seconds if result.infer_seconds > 0 else 0.0
    name = f"{result.name} (reference)" if reference else result.name
    return [
        _cell(name), _cell(result.precision), _cell(result.backend),
        _num(result.top1), _num(result.top5), _num(result.drop_top1), _ci(paired),
        _sci(paired.mcnemar_p) if paired else "—",
        f"{paired.reference_only} / {paired.candidate_only}" if paired else "—",
        _num(stats.agreement * 100.0) if stats else "—",
        str(stats.disagreements) if stats else "—",
        f"{stats.cosine_mean:.5f} / {stats.cosine_min:.5f}" if stats else "—",
        f"{_sci(stats.kl_mean)} / {_sci(stats.kl_p95)}" if stats else "—",
        _sci(stats.max_abs_logit_diff) if stats else "—",
        f"{rate:.1f}",
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return lines


def summary_table(report: EvalReport) -> List[str]:
    """The per-model table (the part the CLI prints)."""
    header = ["model", "precision", "backend", "top-1 %", "top-5 %", "top-1 drop (pts)",
              f"drop {drop_confidence(report):g} % CI (pts)", "McNemar p",
              "ref-only / cand-only right", "agreement %", "disagree", "cosine mean / min",
              "KL mean / p95", "max abs Δlogit", "infer img/s"]
    rows = [_row(m, m is report.reference, report.images_evaluated) for m in report.models]
    return _table(header, rows)


def statistics_note(report: EvalReport) -> str:
    """What the paired columns mean on this many images (unlabeled: that there are none)."""
    if not report.labeled:
        return ("Unlabeled images: agreement statistics only (no accuracy, drop, McNemar p or "
                "drop interval).")
    n = report.images_evaluated
    paired = next((c.paired for c in report.candidates if c.paired is not None), None)
    text = (f"On {n} images one image is {100.0 / n:.3f} points. McNemar p: exact two-sided "
            "binomial test on the images only one of the two models gets right "
            "(ref-only / cand-only); p >= 0.05 means the difference is within chance.")
    if paired is not None:
        text += (f" Drop CI: {100.0 * paired.confidence:g} % paired bootstrap over the images "
                 f"({paired.resamples} resamples, seed {paired.seed}).")
    return text


def class_order(report: EvalReport) -> Tuple[List[int], str]:
    """Class indices to show (all, or the ``_MAX_CLASS_ROWS`` that dropped most) and a note
    saying which; the Markdown table and the per-class plot show the same classes."""
    counts = report.class_counts or []
    order = list(range(len(counts)))
    if len(order) <= _MAX_CLASS_ROWS:
        return order, ""

    def worst_drop(i: int) -> float:
        ref = (report.reference.per_class_correct or [0] * len(counts))[i]
        return max(((ref - (c.per_class_correct or [0] * len(counts))[i]) / max(counts[i], 1)
                    for c in report.candidates), default=0.0)

    order = sorted(order, key=lambda i: (-worst_drop(i), i))[:_MAX_CLASS_ROWS]
    return order, (f"Showing the {_MAX_CLASS_ROWS} classes whose accuracy dropped most "
                   f"(all {len(counts)} are in the JSON).")


def _class_rows(report: EvalReport) -> Tuple[List[List[str]], str]:
    counts = report.class_counts or []
    order, note = class_order(report)
    rows = []
    for i in order:
        cells = [_cell(report.labels[i]), str(counts[i])]
        for m in report.models:
            correct = (m.per_class_correct or [0] * len(counts))[i]
            cells.append(_num(100.0 * correct / counts[i]) if counts[i] else "—")
        rows.append(cells)
    return rows, note


def _link(path: str, link_base: "str | Path | None") -> str:
    target = os.path.relpath(path, link_base) if link_base is not None else path
    target = Path(target).as_posix()
    return f"<{target}>" if " " in target else target


def _plot_lines(report: EvalReport, link_base: "str | Path | None") -> List[str]:
    lines = ["", "## Plots", ""]
    for title, path in report.plots.items():
        lines += [f"![{_cell(title)}]({_link(path, link_base)})", ""]
    return lines[:-1]


def render_markdown(report: EvalReport, link_base: "str | Path | None" = None) -> str:
    """The full Markdown report: summary, statistics note, gate verdict, per-class table,
    plots (linked relative to ``link_base``, the folder the Markdown is written to), skipped
    files."""
    kind = f"labeled, {len(report.labels)} classes" if report.labeled else "unlabeled"
    lines = [f"# edge-resnet evaluation: `{report.data_dir}`", "",
             f"{report.images_evaluated} images evaluated ({kind}) out of "
             f"{report.files_considered} files; {len(report.skipped)} skipped as unreadable. "
             f"Batch {report.batch_size}, {report.seconds:.1f} s "
             f"({report.images_per_second:.1f} images/s for all models together).", ""]
    lines += summary_table(report)
    lines += ["", statistics_note(report), "", gate_line(report)]
    lines += ["", "## Backends", ""] + _table(
        ["model", "backend", "device", "why this backend"],
        [[_cell(m.name), _cell(m.backend), _cell(m.device), _cell(m.backend_reason or "—")]
         for m in report.models])
    if report.labeled and report.class_counts is not None:
        rows, note = _class_rows(report)
        lines += ["", "## Per-class top-1 accuracy (%)", ""]
        if note:
            lines += [note, ""]
        lines += _table(["class", "images"] + [_cell(m.name) for m in report.models], rows)
    if report.plots:
        lines += _plot_lines(report, link_base)
    if report.skipped:
        lines += ["", f"## Skipped files ({len(report.skipped)})", ""]
        for path, reason in list(report.skipped.items())[:_MAX_SKIPPED_SHOWN]:
            reason = reason[len(path) + 2:] if reason.startswith(path + ": ") else reason
            lines.append(f"- `{path}`: {_cell(reason)}")
        if len(report.skipped) > _MAX_SKIPPED_SHOWN:
            lines.append(f"- … and {len(report.skipped) - _MAX_SKIPPED_SHOWN} more (see the JSON)")
    return "\n".join(lines) + "\n"


def report_paths(out: "str | Path") -> Tuple[Path, Path]:
    """Where :func:`write_report` puts the files: ``<dir>/eval.{json,md}`` for an existing folder,
    else ``<prefix>.json`` and ``<prefix>.md`` (a given .json/.md suffix is dropped)."""
    out = Path(out)
    if out.is_dir():
        out = out / "eval"
    elif out.suffix.lower() in (".json", ".md"):
        out = out.with_suffix("")
    return out.with_name(out.name + ".json"), out.with_name(out.name + ".md")


def write_report(report: EvalReport, out: "str | Path") -> Tuple[Path, Path]:
    """Write the JSON and Markdown reports atomically; returns (json_path, md_path). Plots in
    ``report.plots`` are linked from the Markdown by paths relative to its folder."""
    json_path, md_path = report_paths(out)
    atomic_write_json(json_path, report.to_dict())
    atomic_write_text(md_path, report.to_markdown(link_base=md_path.parent.resolve()))
    return json_path, md_path
