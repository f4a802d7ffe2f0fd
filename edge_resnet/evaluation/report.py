"""The evaluation report: one typed result per model, rendered to JSON (machines, CI) and Markdown
(people, PR comments), written atomically.

Accuracies are percentages, drops are percentage points (reference minus candidate, positive is
worse), agreement statistics compare each candidate's logits with the reference's per image.
Counts are kept next to the percentages so numbers can be re-derived exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edge_resnet.evaluation.metrics import AgreementStats
from edge_resnet.io_utils import atomic_write_json, atomic_write_text

__all__ = ["EvalReport", "ModelResult", "gate_line", "render_markdown", "report_paths",
           "summary_table", "write_report"]

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

    def to_dict(self) -> Dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "agreement"}
        data["agreement"] = self.agreement.to_dict() if self.agreement is not None else None
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
    gate_metric: Optional[str] = None
    gate_passed: Optional[bool] = None
    gate_failures: List[str] = field(default_factory=list)
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
        data["labels"] = list(self.labels)
        data["reference"] = self.reference.to_dict()
        data["candidates"] = [c.to_dict() for c in self.candidates]
        data["images_per_second"] = self.images_per_second
        return _json_safe(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_markdown(self) -> str:
        return render_markdown(self)


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


def _row(result: ModelResult, reference: bool, images: int) -> List[str]:
    stats = result.agreement
    rate = images / result.infer_seconds if result.infer_seconds > 0 else 0.0
    name = f"{result.name} (reference)" if reference else result.name
    return [
        _cell(name), _cell(result.precision), _cell(result.backend),
        _num(result.top1), _num(result.top5), _num(result.drop_top1),
        _num(stats.agreement * 100.0) if stats else "—",
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
              "agreement %", "cosine mean / min", "KL mean / p95", "max abs Δlogit", "infer img/s"]
    rows = [_row(m, m is report.reference, report.images_evaluated) for m in report.models]
    return _table(header, rows)


def gate_line(report: EvalReport) -> str:
    if report.max_drop is None:
        return "Gate: none (pass --max-drop POINTS to fail on an accuracy drop)."
    what = ("top-1 drop" if report.gate_metric == "top1_drop"
            else "top-1 disagreement with the reference (unlabeled data; bounds the drop)")
    verdict = "PASSED" if report.gate_passed else "FAILED: " + "; ".join(report.gate_failures)
    return f"Gate: {what} <= {report.max_drop:g} points → {verdict}"


def _class_rows(report: EvalReport) -> Tuple[List[List[str]], str]:
    counts = report.class_counts or []
    models = report.models
    order = list(range(len(counts)))
    note = ""
    if len(order) > _MAX_CLASS_ROWS:
        def worst_drop(i: int) -> float:
            ref = (report.reference.per_class_correct or [0] * len(counts))[i]
            return max(((ref - (c.per_class_correct or [0] * len(counts))[i]) / max(counts[i], 1)
                        for c in report.candidates), default=0.0)
        order = sorted(order, key=lambda i: (-worst_drop(i), i))[:_MAX_CLASS_ROWS]
        note = (f"Showing the {_MAX_CLASS_ROWS} classes whose accuracy dropped most "
                f"(all {len(counts)} are in the JSON).")
    rows = []
    for i in order:
        cells = [_cell(report.labels[i]), str(counts[i])]
        for m in models:
            correct = (m.per_class_correct or [0] * len(counts))[i]
            cells.append(_num(100.0 * correct / counts[i]) if counts[i] else "—")
        rows.append(cells)
    return rows, note


def render_markdown(report: EvalReport) -> str:
    """The full Markdown report: summary, gate verdict, per-class table, skipped files."""
    kind = f"labeled, {len(report.labels)} classes" if report.labeled else "unlabeled"
    lines = [f"# edge-resnet evaluation: `{report.data_dir}`", "",
             f"{report.images_evaluated} images evaluated ({kind}) out of "
             f"{report.files_considered} files; {len(report.skipped)} skipped as unreadable. "
             f"Batch {report.batch_size}, {report.seconds:.1f} s "
             f"({report.images_per_second:.1f} images/s for all models together).", ""]
    lines += summary_table(report)
    lines += ["", gate_line(report)]
    if report.labeled and report.class_counts is not None:
        rows, note = _class_rows(report)
        lines += ["", "## Per-class top-1 accuracy (%)", ""]
        if note:
            lines += [note, ""]
        lines += _table(["class", "images"] + [_cell(m.name) for m in report.models], rows)
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
    """Write the JSON and Markdown reports atomically; returns (json_path, md_path)."""
    json_path, md_path = report_paths(out)
    atomic_write_json(json_path, report.to_dict())
    atomic_write_text(md_path, report.to_markdown())
    return json_path, md_path
