"""`edge-resnet run` as a real subprocess: SIGTERM mid-run drains, flushes and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import pytest

from edge_resnet.cli import main


def _run_cli(*args: str) -> "subprocess.Popen[str]":
    cmd = [sys.executable, "-m", "edge_resnet.cli", "run", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_leaves_a_complete_jsonl(digits_onnx: Path, digits_video: Tuple[Path, list],
                                         tmp_path: Path) -> None:
    video, _ = digits_video
    out, metrics = tmp_path / "events.jsonl", tmp_path / "metrics.json"
    proc = _run_cli(str(digits_onnx), str(video), str(out), "--loop", "-1", "--threads", "2",
                    "--metrics-json", str(metrics), "--stats-interval", "0")
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or len(out.read_text().splitlines()) < 21:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no events within 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]    # every line is whole JSON
    assert [e["type"] for e in (lines[0], lines[-1])] == ["run_start", "run_end"]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    events = [e for e in lines if e["type"] == "result"]
    summary = json.loads(metrics.read_text())
    assert summary["stopped_by_signal"] is True
    assert len(events) == summary["counts"]["processed"] == summary["counts"]["captured"]
    assert [e["frame"] for e in events] == list(range(len(events)))
    assert "SIGTERM" in stderr and "processed" in stderr


def test_cli_errors_are_one_line(digits_onnx: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(digits_onnx), str(tmp_path / "missing.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert main(["run", str(digits_onnx), "ftp://x/y"]) == 2
    assert main(["run", str(digits_onnx), str(tmp_path), "out.unknown"]) == 2
    assert "unknown output" in capsys.readouterr().err
