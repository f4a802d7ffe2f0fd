"""``--backend auto`` is the default of ``bench`` and ``run``: the choice and its reason are
shown in the bench table/JSON and logged by ``run``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge_resnet.backends.reference import choose_backend, installed_runtimes, read_cpu_flags
from edge_resnet.cli import main
from edge_resnet.runtime.timing import BenchOptions, format_table, run_bench


def test_bench_defaults_to_auto_and_says_why(digits_onnx: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", str(digits_onnx), "--batch-size", "2", "--runs", "3", "--threads", "1",
                 "--report", str(out)]) == 0
    table = capsys.readouterr().out
    row, = json.loads(out.read_text())
    expected, reason = choose_backend(digits_onnx, read_cpu_flags(), installed_runtimes())
    assert row["backend"] == expected == "onnxruntime"  # a float model: ONNX Runtime anywhere
    assert row["backend_reason"] == reason and row["error"] == ""
    assert f"| {digits_onnx.name} | onnxruntime |" in table
    assert f"backend of {digits_onnx.name}: onnxruntime (float ONNX model" in table


def test_bench_explicit_backend_has_no_auto_note(digits_onnx: Path) -> None:
    rows = run_bench([str(digits_onnx)], BenchOptions(backends=["onnxruntime"], runs=2,
                                                      batch=1, threads=1))
    assert rows[0].backend_reason == "asked for (onnxruntime)"
    assert "backend of" not in format_table(rows)


def test_bench_auto_engine_row_names_tensorrt(tmp_path: Path) -> None:
    from edge_resnet.core import DependencyError
    from edge_resnet.engine.trt_api import import_tensorrt

    try:
        import_tensorrt()
    except DependencyError:
        pass
    else:
        pytest.skip("TensorRT is installed: the hardware suite covers engines")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    row, = run_bench([str(engine)], BenchOptions(runs=2, batch=1))
    assert row.backend == "auto" and "TensorRT is not installed" in row.error


def test_run_logs_the_auto_choice(digits_onnx: Path, digits_dirs: Any, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = sorted(Path(digits_dirs.test_dir).iterdir())[0]
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.INFO, logger="edge_resnet.backends.reference"):
        code = main(["run", str(digits_onnx), str(folder), str(out), "--max-frames", "3",
                     "--stats-interval", "0"])
    assert code == 0
    chosen = [r.getMessage() for r in caplog.records
              if r.name == "edge_resnet.backends.reference"]
    assert chosen == [f"{digits_onnx}: backend onnxruntime (auto: float ONNX model: ONNX "
                      "Runtime (the reference CPU backend))"]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for r in results if "top_k" in r or "label" in r) >= 1
