"""Bad inputs are clear errors and leave no artifact behind; finished stages are resumed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_resnet.calibration import CalibrationOptions, calibrate
from edge_resnet.calibration.options import (AccuracyOptions, CacheOptions, MethodOptions,
                                             ReaderOptions)
from edge_resnet.cli import main
from edge_resnet.core import CalibrationError, DataError, InputError, ModelError


def _few() -> CalibrationOptions:
    return CalibrationOptions(reader=ReaderOptions(num_images=8), progress=False)


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_missing_and_corrupt_model(tmp_path: Path, digits_dirs: Any) -> None:
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="does not exist"):
        calibrate(tmp_path / "none.onnx", digits_dirs.train_dir, out, _few())
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        calibrate(corrupt, digits_dirs.train_dir, out, _few())
    assert _leftovers(out) == []


def test_non_resnet_graph_is_refused(tmp_path: Path, digits_dirs: Any) -> None:
    weight = numpy_helper.from_array(np.ones((3072, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="fc")], "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [weight])
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="not a ResNet-like graph"):
        calibrate(path, digits_dirs.train_dir, tmp_path / "out", _few())
    assert _leftovers(tmp_path / "out") == []


def test_folder_of_non_images(tmp_path: Path, digits_onnx: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.jpg").write_text("plain text, not a JPEG")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no usable image"):
        calibrate(digits_onnx, data, out, _few())
    assert _leftovers(out) == []


@pytest.mark.parametrize("make,match", [
    (lambda: MethodOptions(percentile=0.0), r"percentile=0.0: must be in \(0, 100\]"),
    (lambda: MethodOptions(percentile=100.01), r"percentile=100.01: must be in \(0, 100\]"),
    (lambda: ReaderOptions(num_images=0), "num_images must be a positive number, got 0"),
    (lambda: CalibrationOptions(methods=("kl",)), "unknown calibration method"),
    (lambda: CalibrationOptions(methods=("auto", "mse")), "auto and all stand alone"),
    (lambda: AccuracyOptions(Path("/nonexistent"), max_drop=0.5),
     "evaluation folder /nonexistent does not exist"),
    (lambda: CacheOptions(trt_version="11.4"), "implicit INT8 was removed in TensorRT 11"),
    (lambda: CacheOptions(calibrator="MinMax"), "unknown cache calibrator"),
])
def test_bad_options(make: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make()


def test_cli_names_its_flags_in_option_errors(capsys: pytest.CaptureFixture,
                                              digits_onnx: Path, tmp_path: Path) -> None:
    assert main(["calibrate", str(digits_onnx), str(tmp_path), "--out", str(tmp_path / "o"),
                 "--percentile", "0"]) == 2
    assert "--percentile 0.0: must be in (0, 100]" in capsys.readouterr().err
    assert main(["calibrate", str(digits_onnx), str(tmp_path), "--out", str(tmp_path / "o"),
                 "--max-drop", "0.5"]) == 2
    assert "--max-drop needs --eval-data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_stats_file_of_another_model(tmp_path: Path, calibrated: Any, digits_onnx: Path,
                                     digits_dirs: Any) -> None:
    other = onnx.load(str(digits_onnx))
    init = other.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.5, init.name))
    other_path = tmp_path / "other.onnx"
    onnx.save(other, str(other_path))
    out = tmp_path / "out"
    with pytest.raises(CalibrationError, match="statistics of another model"):
        calibrate(other_path, digits_dirs.train_dir, out,
                  CalibrationOptions(stats_path=calibrated.stats_path))
    assert _leftovers(out) == []


def test_resume_reuses_finished_stages_and_cli_reports(tmp_path: Path, calibrated: Any,
                                                       digits_onnx: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stem = digits_onnx.stem
    shutil.copy(calibrated.stats_path, out / f"{stem}.stats.npz")
    first = calibrate(digits_onnx, None, out,
                      CalibrationOptions(methods=("percentile",), progress=False))
    assert first.stats_reused and not first.methods["percentile"].reused
    mtime = first.methods["percentile"].qdq_path.stat().st_mtime_ns
    code = main(["calibrate", str(digits_onnx), "--out", str(out), "--method", "percentile",
                 "--no-progress"])
    assert code == 0
    assert "(reused)" in capsys.readouterr().out
    assert first.methods["percentile"].qdq_path.stat().st_mtime_ns == mtime
    assert not list(out.glob(".*.tmp"))  # no temporary files left by atomic writes
    assert main(["calibrate", str(digits_onnx), "--out", str(out), "--percentile", "0"]) == 2
