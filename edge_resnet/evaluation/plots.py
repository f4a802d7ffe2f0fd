"""PNG plots of an evaluation report: per-class top-1 per precision, |Δlogit| per candidate.

Drawn from the report alone (per-class counts and the |Δlogit| histograms it keeps), so plots
can be redrawn from a saved JSON without the logits. matplotlib is imported only here and only
when plots are asked for, with the Agg canvas on explicit ``Figure`` objects: no display, no
pyplot global state, safe in a headless CI or on a device. Device side: Python 3.8.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

import numpy as np

from edge_resnet.core import DependencyError, InputError
from edge_resnet.evaluation.report import EvalReport, ModelResult, class_order
from edge_resnet.io_utils import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PER_CLASS_TITLE", "logit_diff_title", "require_matplotlib", "write_plots"]

PER_CLASS_TITLE = "Per-class top-1 accuracy per precision"
_DPI = 100


def logit_diff_title(name: str) -> str:
    return f"|logit difference| to the reference: {name}"


def require_matplotlib() -> None:
    """Raise :class:`DependencyError` (with the install command) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401  (only checking that it is there)
    except ImportError as exc:
        raise DependencyError(
            "plots need matplotlib, which is not installed: pip install matplotlib "
            "(it comes with pip install 'edge-resnet[host]'), or leave out the plots") from exc


def _figure(width: float, height: float) -> "Figure":
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: "Figure", path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), format="png", dpi=_DPI)
    return path


def _accuracy(model: ModelResult, counts: Sequence[int], order: Sequence[int]) -> np.ndarray:
    correct = model.per_class_correct or [0] * len(counts)
    return np.array([100.0 * correct[i] / counts[i] if counts[i] else np.nan for i in order])


def plot_per_class(report: EvalReport, path: Path) -> Path:
    """Grouped bars: one group per class, one bar per model (the classes the Markdown shows)."""
    counts = report.class_counts or []
    order, note = class_order(report)
    models = report.models
    figure = _figure(min(14.0, max(6.0, 0.12 * len(order) * (len(models) + 1))) + 3.0, 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(models)
    x = np.arange(len(order))
    values = [_accuracy(model, counts, order) for model in models]
    for k, (model, accuracy) in enumerate(zip(models, values)):
        axes.bar(x + k * width - 0.4 + width / 2, accuracy, width,
                 label=model.name + (" (reference)" if model is report.reference else ""))
    axes.set_xticks(x)
    axes.set_xticklabels([report.labels[i] for i in order], rotation=90 if len(order) > 12 else 0)
    floor = _axis_floor(values)
    axes.set_ylim(floor, 100.5)
    axes.set_ylabel("top-1 accuracy (%)" + (f", axis from {floor:g}" if floor > 0 else ""))
    axes.grid(axis="y", alpha=0.3)
    axes.set_title(PER_CLASS_TITLE + (f"\n{note}" if note else ""))
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return _save(figure, path)


def _axis_floor(values: Sequence[np.ndarray]) -> float:
    """Start the y axis 5 points below the lowest bar, in steps of 10 (0 when that is near):
    per-class accuracies of precisions of one model sit close together near the top."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([100.0])])
    floor = 10.0 * np.floor((finite.min() - 5.0) / 10.0)
    return 0.0 if floor < 30.0 else float(floor)


def _tick_labels(edges: Sequence[float]) -> Tuple[List[int], List[str]]:
    """Ticks at every decade of the quarter-decade edges (the first bin, [0, 1e-7), is named in
    the axis label: a "0" tick beside "1e-7" would overlap)."""
    ticks: List[int] = []
    labels: List[str] = []
    for i, edge in enumerate(edges[1:], start=1):
        exponent = np.log10(edge)
        if abs(exponent - round(exponent)) < 1e-9:
            ticks.append(i)
            labels.append(f"1e{int(round(exponent))}")
    return ticks, labels


def plot_logit_diff(report: EvalReport, candidate: ModelResult, path: Path) -> Path:
    """Histogram (log counts) of |candidate - reference| over every logit of every image."""
    hist = candidate.logit_diff
    if hist is None:
        raise InputError(f"candidate {candidate.name!r} has no |logit difference| histogram; "
                         "plot a report made by evaluate()")
    figure = _figure(7.0, 3.5)
    axes = figure.add_subplot()
    axes.bar(np.arange(len(hist.counts)), hist.counts, width=1.0, align="edge")
    axes.set_yscale("log")
    ticks, labels = _tick_labels(hist.edges)
    axes.set_xticks(ticks)
    axes.set_xticklabels(labels)
    axes.set_xlabel("|Δlogit| (bins: [0, 1e-7), quarter decades, last bin open)")
    axes.set_ylabel("logits")
    extra = f", {hist.nonfinite} non-finite" if hist.nonfinite else ""
    axes.set_title(f"{logit_diff_title(candidate.name)}\n"
                   f"{report.images_evaluated} images x {len(report.labels)} classes{extra}")
    return _save(figure, path)


def _file_names(names: Sequence[str]) -> List[str]:
    """Safe, unique file stems for candidate names (which may hold any character)."""
    taken: Dict[str, int] = {}
    stems = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "candidate"
        taken[stem] = taken.get(stem, 0) + 1
        stems.append(stem if taken[stem] == 1 else f"{stem}-{taken[stem]}")
    return stems


def write_plots(report: EvalReport, out_dir: "str | Path") -> List[Path]:
    """Write the PNGs into ``out_dir`` (created), record them in ``report.plots`` (title ->
    path) so :func:`~edge_resnet.evaluation.report.write_report` links them; returns the paths.

    Per-class accuracy needs labeled images; the |Δlogit| histogram is drawn per candidate.
    """
    require_matplotlib()
    folder = Path(out_dir)
    plots: Dict[str, Path] = {}
    if report.labeled and report.class_counts is not None:
        plots[PER_CLASS_TITLE] = plot_per_class(report, folder / "per_class_accuracy.png")
    stems = _file_names([c.name for c in report.candidates])
    for cand, stem in zip(report.candidates, stems):
        if cand.logit_diff is not None:
            path = folder / f"logit_diff_{stem}.png"
            plots[logit_diff_title(cand.name)] = plot_logit_diff(report, cand, path)
    report.plots = {title: str(path.resolve()) for title, path in plots.items()}
    return list(plots.values())
