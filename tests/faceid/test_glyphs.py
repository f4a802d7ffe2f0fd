"""The offline glyph-identity protocol: disjoint, big enough, deterministic, reusable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edge_resnet.cli import main
from edge_resnet.core import DataError, InputError
from edge_resnet.datasets.glyphs import (EVAL_GLYPHS, TRAIN_GLYPHS, WIDE_TRAIN_GLYPHS,
                                         dejavu_fonts, identity_name, write_glyph_folder)
from edge_resnet.images import read_image


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_identity_sets_are_disjoint_and_large_enough() -> None:
    assert len(set(EVAL_GLYPHS)) == len(EVAL_GLYPHS) == 59
    assert len(set(TRAIN_GLYPHS)) == len(TRAIN_GLYPHS) == 65
    assert not set(EVAL_GLYPHS) & set(TRAIN_GLYPHS)
    assert not set("IlO") & set(EVAL_GLYPHS)
    assert identity_name("a") == "U+0061" and identity_name("A") == "U+0041"


def test_glyph_folder_is_deterministic_and_reused(tmp_path: Path) -> None:
    fonts = dejavu_fonts()
    assert fonts, "fontconfig found no DejaVu font"
    one = write_glyph_folder(tmp_path / "a", EVAL_GLYPHS[:6], per_identity=5, size=32, seed=3)
    write_glyph_folder(tmp_path / "b", EVAL_GLYPHS[:6], per_identity=5, size=32, seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert one["identities"] == 6 and one["skipped"] == []
    img = read_image(tmp_path / "a" / "U+0041" / "000.png")
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 10
    # images of one identity differ (fonts, augmentation); a reused folder is not rewritten
    first = sorted((tmp_path / "a" / "U+0041").glob("*.png"))
    assert len({p.read_bytes() for p in first}) == 5
    before = (tmp_path / "a" / "glyphs.json").stat().st_mtime_ns
    assert write_glyph_folder(tmp_path / "a", EVAL_GLYPHS[:6], 5, 32, 3) == one
    assert (tmp_path / "a" / "glyphs.json").stat().st_mtime_ns == before
    other = write_glyph_folder(tmp_path / "c", EVAL_GLYPHS[:6], per_identity=5, size=32, seed=4)
    assert other["identities"] == 6 and _digest(tmp_path / "c") != _digest(tmp_path / "a")
    with pytest.raises(InputError, match="not empty"):
        write_glyph_folder(tmp_path / "a", EVAL_GLYPHS[:6], 5, 32, seed=9)


def test_fonts_that_lack_a_glyph_are_not_used(tmp_path: Path) -> None:
    mono = [p for p in dejavu_fonts() if p.name == "DejaVuSansMono.ttf"]
    if not mono:
        pytest.skip("DejaVuSansMono.ttf (fonts-dejavu-core) is not installed")
    with pytest.raises(DataError, match="draws these glyphs"):
        write_glyph_folder(tmp_path / "x", "\U0001F600", 2, 32, 0, fonts=mono)   # no emoji


def test_cli_glyphs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "g"
    assert main(["gallery", "glyphs", str(out), "--set", "train", "--per-identity", "2",
                 "--size", "24"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["identities"] == 65 and info["per_identity"] == 2
    assert len(list(out.glob("U+*/*.png"))) == 130
    assert read_image(next(out.glob("U+*/000.png"))).shape == (24, 24, 3)


def test_cli_eval_and_enroll_refusals_are_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "g"
    write_glyph_folder(folder, EVAL_GLYPHS[:3], per_identity=2, size=16, seed=0)
    assert main(["gallery", "eval", str(folder), "--model", "missing.onnx", "--far", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--far values are rates in (0, 1)" in err[0]
    assert main(["gallery", "eval", str(folder), "--model", "m.onnx", "--photos", "x"]) == 2
    assert "--photos must be comma-separated numbers" in capsys.readouterr().err


def test_wide_train_set_is_disjoint_and_parallel_rendering_is_identical(tmp_path: Path) -> None:
    assert len(set(WIDE_TRAIN_GLYPHS)) == len(WIDE_TRAIN_GLYPHS) == 911
    assert WIDE_TRAIN_GLYPHS.startswith(TRAIN_GLYPHS)
    assert not set(WIDE_TRAIN_GLYPHS) & set(EVAL_GLYPHS + "IlO")
    glyphs = WIDE_TRAIN_GLYPHS[60:72]  # Greek and Armenian: several fonts each
    serial = write_glyph_folder(tmp_path / "serial", glyphs, per_identity=3, size=24, seed=5)
    parallel = write_glyph_folder(tmp_path / "parallel", glyphs, 3, 24, 5, workers=2)
    assert serial == parallel and serial["identities"] == 12
    assert _digest(tmp_path / "serial") == _digest(tmp_path / "parallel")


def test_cli_glyphs_train_wide(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "wide"
    assert main(["gallery", "glyphs", str(out), "--set", "train-wide", "--per-identity", "1",
                 "--size", "16"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["set"] == "train-wide" and info["identities"] == 911 and info["skipped"] == []
    assert len(list(out.glob("U+*/000.png"))) == 911
