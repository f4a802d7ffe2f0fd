"""`edge-resnet bundle run`: runs the active release, commits it after N frames, and on SIGHUP
reloads whatever release a later install switched to (real subprocess, real signals)."""

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


def test_run_commits_after_frames_and_reloads_on_sighup(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet) -> None:
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
        [sys.executable, "-m", "edge_resnet.cli", "bundle", "run", str(root), str(frames),
         str(out), "--loop", "-1", "--commit-after", "20", "--stats-interval", "0"],
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
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGHUP: reloading" in err and "committed tiny 1.1.0" in err
