"""``eval --plots``: real PNGs, linked from the Markdown by relative paths, drawn from the report.

The digits model is compared with an exact copy (|Δlogit| = 0 everywhere) and with the
all-"0" candidate (|Δlogit| = 1e4 on class 0, 0 elsewhere), so the histograms behind the plots
have known counts whatever the trained model is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge_resnet.cli import main
from edge_resnet.core import DependencyError
from edge_resnet.evaluation import evaluate, write_plots, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_real_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 400
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # drawn, not a blank canvas


def test_cli_plots_are_real_pngs_linked_from_the_markdown(
        digits_onnx: Path, class0_digits_onnx: Path, digits_dirs: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    plots, report = tmp_path / "plots", tmp_path / "report" / "eval"
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", str(class0_digits_onnx), "--name", "int8 all-0",
                 "--candidate", str(digits_onnx), "--name", "copy", "--no-progress",
                 "--plots", str(plots), "--report", str(report)])
    assert code == 0
    assert sorted(p.name for p in plots.iterdir()) == \
        ["logit_diff_copy.png", "logit_diff_int8_all-0.png", "per_class_accuracy.png"]
    for png in plots.iterdir():
        _assert_real_png(png)
    markdown = report.with_suffix(".md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == ["../plots/logit_diff_copy.png",
                             "../plots/logit_diff_int8_all-0.png",
                             "../plots/per_class_accuracy.png"]
    for link in links:  # relative to the Markdown's folder, and pointing at the files
        assert (report.parent / link).resolve() == (plots / Path(link).name).resolve()
    saved = json.loads(report.with_suffix(".json").read_text())
    assert sorted(Path(p).name for p in saved["plots"].values()) == sorted(
        p.name for p in plots.iterdir())
    # the histograms the plots show: 359 images x 10 classes per candidate
    copy_hist = saved["candidates"][1]["logit_diff"]
    assert copy_hist["counts"][0] == 3590 and sum(copy_hist["counts"]) == 3590
    shifted = saved["candidates"][0]["logit_diff"]
    assert shifted["counts"][0] == 359 * 9 and shifted["counts"][-1] == 359
    assert shifted["nonfinite"] == 0
    assert "plots:" in capsys.readouterr().err


def test_markdown_has_the_paired_columns(digits_onnx: Path, class0_digits_onnx: Path,
                                         digits_dirs: Any, tmp_path: Path) -> None:
    result = evaluate(digits_onnx, {"copy": digits_onnx}, digits_dirs.test_dir,
                      num_images=60, progress=False)
    markdown = result.to_markdown()
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    for column in ("drop 95 % CI (pts)", "McNemar p", "ref-only / cand-only right",
                   "disagree"):
        assert f"| {column} |" in header
    row = next(line for line in markdown.splitlines() if line.startswith("| copy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5:11] == ["0.00", "+0.00 … +0.00", "1.0000", "0 / 0", "100.00", "0"]
    assert "On 60 images one image is 1.667 points." in markdown
    # unlabeled: says there is no drop statistics, and draws no per-class plot
    unlabeled = evaluate(digits_onnx, {"all-0": class0_digits_onnx}, digits_dirs.test_dir,
                         num_images=40, labeled=False, progress=False)
    assert "Unlabeled images: agreement statistics only" in unlabeled.to_markdown()
    written = write_plots(unlabeled, tmp_path / "p")
    assert [p.name for p in written] == ["logit_diff_all-0.png"]
    _, md_path = write_report(unlabeled, tmp_path / "p")
    assert "](logit_diff_all-0.png)" in md_path.read_text()


def test_plots_without_matplotlib_is_a_dependency_error(
        digits_onnx: Path, digits_dirs: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--no-progress", "--plots", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert code == 2 and "plots need matplotlib" in err and "pip install matplotlib" in err
    assert not (tmp_path / "plots").exists()
    result = evaluate(digits_onnx, [], digits_dirs.test_dir, num_images=10, progress=False)
    with pytest.raises(DependencyError, match="pip install matplotlib"):
        write_plots(result, tmp_path / "plots")
