"""``--method auto``: methods scored on calibration images held out of the statistics, the best
one chosen, the scores recorded and printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_resnet.calibration.scoring import HoldoutSplit, MethodScore, choose_method
from edge_resnet.cli import main
from edge_resnet.core import InputError

CALIB_IMAGES = 200  # tests/calibration/conftest.py: the calibrated fixture's sample


def test_holdout_split_keeps_every_fifth_image_aside() -> None:
    batches = [np.arange(i, i + 4).reshape(4, 1) for i in range(0, 12, 4)]  # images 0..11
    split = HoldoutSplit(batches, every=5)
    kept = np.concatenate(list(split)).ravel().tolist()
    assert kept == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    assert np.concatenate(split.held).ravel().tolist() == [4, 9]
    assert [b.ravel().tolist() for b in split.held_batches(1)] == [[4], [9]]


def test_choice_is_agreement_then_kl() -> None:
    scores = {"a": MethodScore("a", 99.0, 0.010, 40), "b": MethodScore("b", 99.5, 0.020, 40),
              "c": MethodScore("c", 99.5, 0.015, 40)}
    assert choose_method(scores) == "c"
    with pytest.raises(InputError, match="no range method was scored"):
        choose_method({})


def test_all_methods_are_scored_on_held_out_images(calibrated: Any) -> None:
    scores = calibrated.method_scores
    assert sorted(scores) == ["entropy", "minmax", "mse", "percentile"]
    assert calibrated.holdout_images == CALIB_IMAGES // 5
    assert calibrated.images_used == CALIB_IMAGES - CALIB_IMAGES // 5  # statistics: the rest
    for score in scores.values():
        assert score.images == calibrated.holdout_images
        assert 0.0 <= score.agreement <= 100.0 and score.kl >= 0.0
    best = max(s.agreement for s in scores.values())
    assert scores[calibrated.chosen_method].agreement == best
    summary = json.loads(calibrated.summary_path.read_text())
    assert summary["chosen_method"] == calibrated.chosen_method
    assert summary["method_scores"][calibrated.chosen_method]["agreement"] == best


def test_auto_writes_the_chosen_method_and_prints_scores(calibrated: Any, digits_onnx: Path,
                                                         digits_dirs: Any, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    code = main(["calibrate", str(digits_onnx), str(digits_dirs.train_dir), "--out",
                 str(tmp_path), "--stats", str(calibrated.stats_path), "--num-images",
                 str(CALIB_IMAGES), "--batch-size", "32", "--trt-version", "8.6.1",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    chosen = calibrated.chosen_method  # same statistics, same held-out images: same choice
    assert f"| {chosen} (chosen) |" in printed
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == [
        f"{digits_onnx.stem}.int8.{chosen}.onnx"]
    summary = json.loads((tmp_path / f"{digits_onnx.stem}.calibration.json").read_text())
    assert summary["chosen_method"] == chosen
    assert summary["method_scores"] == json.loads(json.dumps(
        {k: vars(v) for k, v in calibrated.method_scores.items()}))


def test_auto_without_data_is_refused_before_writing(calibrated: Any, digits_onnx: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["calibrate", str(digits_onnx), "--out", str(out), "--stats",
                 str(calibrated.stats_path), "--no-progress"])
    assert code == 2
    assert "--method auto scores the range methods on held-out" in capsys.readouterr().err
    assert not out.exists()


def test_auto_with_fewer_images_than_the_holdout_period_is_refused(
        digits_onnx: Path, digits_dirs: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    import shutil

    data = tmp_path / "few"
    data.mkdir()
    for png in sorted(Path(digits_dirs.train_dir).rglob("*.png"))[:3]:
        shutil.copy(png, data / png.name)
    out = tmp_path / "out"
    code = main(["calibrate", str(digits_onnx), str(data), "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--method auto holds out every 5th calibration image" in err
    assert "gave fewer than 5; give more images or choose a --method" in err
    assert not out.exists()
