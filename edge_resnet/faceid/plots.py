"""ROC plot of an open-set report (TAR against FAR, log FAR axis), one curve per enrolment size.

matplotlib is imported only here and only when ``--plots`` is asked for, with the Agg canvas on
an explicit ``Figure`` (no display, no pyplot state), as :mod:`edge_resnet.evaluation.plots`
does. Device side: Python 3.8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from edge_resnet.evaluation.plots import require_matplotlib
from edge_resnet.io_utils import atomic_path

__all__ = ["ROC_TITLE", "write_roc_plot"]

ROC_TITLE = "Open-set identification: TAR at FAR (unseen identities)"


def write_roc_plot(rep: Dict[str, Any], path: "str | Path") -> Path:
    """Draw the report's curves (and the asked FARs as dotted lines) into a PNG at ``path``."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    for size in rep["sizes"]:
        fars = [p[0] for p in size["curve"]]
        tars = [p[1] for p in size["curve"]]
        ax.plot(fars, tars, marker=".", label=f"{size['photos']} photo(s)/identity, "
                                              f"{size['identities']} identities")
    for point in rep["sizes"][0]["tar_at_far"]:
        ax.axvline(point["far"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("false accept rate (strangers accepted)")
    ax.set_ylabel("true accept rate (right identity, above threshold)")
    ax.set_title(ROC_TITLE, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        figure.savefig(str(tmp), format="png", dpi=100)
    return out
