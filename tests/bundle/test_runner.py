"""`edge-resnet bundle run` and `edge-resnet run --bundle-root` (the same code): run the active
release, commit it after N frames, and on SIGHUP reload whatever release a later install switched
to (real subprocess, real signals)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from edge_resnet.bundle.install import InstallOptions, install, status
from edge_resnet.bundle.signing import load_certificate

Fleet = Tuple[Path, Path]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _active(root: Path) -> Tuple[str, str]:
    info = status(root)
    record = info["slots"][info["active"]]
    return record["version"], record["state"]


def _results(path: Path) -> List[Dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[:-1]  # the last line may be half written
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if "topk" in r]  # results (not run start/end records)


def _command(kind: str, root: Path, frames: Path, out: Path) -> List[str]:
    common = [str(frames), str(out), "--loop", "-1", "--commit-after", "20",
              "--stats-interval", "0"]
    if kind == "bundle run":
        return ["bundle", "run", str(root)] + common
    return ["run", "--bundle-root", str(root)] + common


@pytest.mark.parametrize("kind", ["bundle run", "run --bundle-root"])
def test_run_commits_after_frames_and_reloads_on_sighup(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet, kind: str) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            frames / f"{i}.png")
    root, out = tmp_path / "root", tmp_path / "events.jsonl"
    cert = load_certificate(fleet[1])
    install(make_bundle("1.0.0", seed=0), cert, root, InstallOptions())
    assert _active(root) == ("1.0.0", "pending")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_resnet.cli"] + _command(kind, root, frames, out),
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait(lambda: _active(root) == ("1.0.0", "good"), "the runtime's commit of 1.0.0")
        first = _results(out)
        assert len(first) >= 20
        install(make_bundle("1.1.0", seed=5), cert, root, InstallOptions())
        assert _active(root) == ("1.1.0", "pending")
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: _active(root) == ("1.1.0", "good"), "the reload and commit of 1.1.0")
        committed_at = len(_results(out))  # the new pipeline committed: it wrote these lines
        _wait(lambda: len(_results(out)) > committed_at + 6, "results of 1.1.0")
        later = _results(out)[committed_at:]
        old = {json.dumps(r["topk"], sort_keys=True) for r in first[:6]}
        new = {json.dumps(r["topk"], sort_keys=True) for r in later[:6]}
        assert old != new, "results did not change after reloading another model"
        # events name the release that produced them, before and after the reload
        assert {(r["model"]["name"], r["model"]["version"]) for r in first} == {("tiny", "1.0.0")}
        assert {(r["model"]["name"], r["model"]["version"]) for r in later} == {("tiny", "1.1.0")}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGHUP: reloading" in err and "committed tiny 1.1.0" in err


def test_run_bundle_root_argument_errors(tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """Each misuse of `run` with or without --bundle-root is one line on stderr, exit 2."""
    from edge_resnet.cli import main

    for argv, text in ((["run", "--commit-after", "5", "m.onnx", "cam.mp4"],
                        "--commit-after confirms a release: it needs --bundle-root"),
                       (["run", "m.onnx"], "give SOURCE"),
                       (["run", "--bundle-root", str(tmp_path / "none"), "cam.mp4"],
                        "no release installed under")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and text in err, err
