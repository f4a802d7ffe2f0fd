"""`edge-resnet bench`: one row per model x backend with real measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Tuple

import pytest

from edge_resnet.cli import main
from edge_resnet.core import InputError
from edge_resnet.runtime.timing import BenchOptions, format_table, run_bench


def test_bench_table_and_json(digits_onnx: Path, digits_dirs: Any,
                              digits_video: Tuple[Path, list], tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    backends = ["onnxruntime"]
    try:
        import openvino  # noqa: F401
        backends.append("openvino")
    except ImportError:
        pass
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    out = tmp_path / "bench.json"
    video, _ = digits_video
    code = main(["bench", str(digits_onnx), str(broken), "--backends", ",".join(backends),
                 "--data", str(digits_dirs.test_dir), "--num-images", "60", "--video", str(video),
                 "--batch-size", "4", "--runs", "10", "--threads", "2", "--report", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * len(backends)
    good = [r for r in rows if r["model"] == str(digits_onnx)]
    bad = [r for r in rows if r["model"] == str(broken)]
    assert all(r["error"] == "" for r in good) and all(r["error"] for r in bad)
    for row in good:
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert row["throughput"] > 0 and row["pipeline_fps"] > 0
        assert row["precision"] == "fp32" and row["size_mb"] > 50
        hits = row["accuracy"] * 60       # measured on the 60 images asked for
        assert 0 < row["accuracy"] <= 1 and abs(hits - round(hits)) < 1e-6
    if len(good) == 2:   # both backends see the same 60 images; FP32 results agree
        assert abs(good[0]["accuracy"] - good[1]["accuracy"]) <= 1 / 60
    assert f"| {digits_onnx.name} | onnxruntime |" in table
    assert "error:" in table


def test_bench_refuses_missing_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run_bench([str(tmp_path / "none.onnx")], BenchOptions())


def test_format_table_keeps_units() -> None:
    from edge_resnet.runtime.timing import BenchRow
    row = BenchRow(model="/m/a.onnx", backend="openvino", size_mb=24.0, precision="int8",
                   accuracy=0.8125, latency_ms={"p50": 11.5, "p90": 12.0, "p99": 13.25},
                   throughput=95.0, batch=8, pipeline_fps=80.0)
    line = format_table([row]).splitlines()[-1]
    assert line == ("| a.onnx | openvino | 24.0 | int8 | 81.25 | 11.50 | 12.00 | 13.25 | "
                    "95.0 @8 | 80.0 |")
