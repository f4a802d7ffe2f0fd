"""Power loss during install: SIGKILL at every filesystem step and at random instants.

A forked child runs the real installer on a real root (tiny model, so hundreds of runs take
seconds) and is killed (SIGKILL) either by the step hook at a chosen filesystem step or by the
parent after a random delay. After every kill the parent checks, before any repair, that
``current`` still points at a complete release that loads and reproduces its golden logits, and
that the running release's files and a neighbouring folder are untouched; then that ``status``
repairs the root (no staging leftovers, consistent slot states) and that the install can be
completed afterwards.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.bundle import fsops
from edge_resnet.bundle.health import load_golden
from edge_resnet.bundle.install import (InstallOptions, active_release, commit, install,
                                        status)
from edge_resnet.bundle.signing import load_certificate
from edge_resnet.preprocessing import preprocess_batch
from tamper import snapshot

Fleet = Tuple[Path, Path]
STEP_RUNS = 200
TIMER_RUNS = 40
LEFTOVERS = (".staging", "current.new", "state.json.tmp", ".trash-a", ".trash-b")


def _steps(bundle: Path, cert: object, template: Path, work: Path) -> List[str]:
    """The filesystem steps one install takes (recorded on a scratch copy)."""
    _reset(template, work)
    names: List[str] = []
    fsops.set_step_hook(names.append)
    try:
        install(bundle, cert, work / "root", InstallOptions())
    finally:
        fsops.set_step_hook(None)
    return names


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder on tmpfs (/dev/shm) when there is one: the hundreds of installs here fsync every
    file and directory, and on a disk shared with other writers each fsync can take tens of ms
    (measured: the same test 15 s alone, 100 s while other jobs wrote models). A SIGKILL test
    does not need durable writes; the fsync calls still run."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="edge-resnet-power-", dir=shm))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


def _reset(template: Path, work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work, symlinks=True)


def _killed_install(bundle: Path, cert: object, root: Path, at_step: Optional[int],
                    after_s: float, options: Optional[InstallOptions] = None) -> int:
    """Fork an installer; kill it at step ``at_step`` or after ``after_s``; return its status."""
    return _killed(lambda: install(bundle, cert, root, options or InstallOptions()), at_step,
                   after_s)


def _runnable_version(root: Path) -> str:
    release = active_release(root)
    golden = load_golden(release.path / release.manifest.golden)
    with load_backend("onnxruntime", release.model) as model:
        logits = model.infer(preprocess_batch(list(golden.images), model.spec)).logits
    np.testing.assert_allclose(logits, golden.expected, atol=1e-4)
    return release.manifest.version


@pytest.mark.slow
def test_sigkill_anywhere_leaves_a_runnable_release(scratch: Path, fleet: Fleet,
                                                    make_bundle: Callable[..., Path]) -> None:
    tmp_path = scratch
    cert = load_certificate(fleet[1])
    template = tmp_path / "template"
    (template / "neighbour").mkdir(parents=True)
    (template / "neighbour" / "keep.txt").write_text("not the installer's")
    install(make_bundle("1.0.0", golden_count=1), cert, template / "root", InstallOptions())
    commit(template / "root")
    bundle = make_bundle("1.1.0", seed=1, golden_count=1)
    work = tmp_path / "work"
    steps = _steps(bundle, cert, template, work)
    assert len(steps) > 20, steps
    old_slot = snapshot(template / "root" / "slots" / "a")
    neighbour = snapshot(template / "neighbour")
    rng = random.Random(1123)
    plan = [(i % len(steps), 0.0) for i in range(STEP_RUNS)]
    rng.shuffle(plan)
    plan += [(-1, rng.uniform(0.0, 0.08)) for _ in range(TIMER_RUNS)]
    outcomes = {"old": 0, "new": 0}
    for at_step, after_s in plan:
        _reset(template, work)
        root = work / "root"
        code = _killed_install(bundle, cert, root, None if at_step < 0 else at_step, after_s)
        if at_step >= 0:
            assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL, \
                f"child was not killed at step {at_step} ({steps[at_step]})"
        version = _runnable_version(root)  # before any repair
        assert snapshot(work / "neighbour") == neighbour
        if version == "1.0.0":
            assert snapshot(root / "slots" / "a") == old_slot, f"step {at_step} touched 1.0.0"
        info = status(root)  # repairs
        assert not [n for n in LEFTOVERS if (root / n).exists() or (root / n).is_symlink()]
        active = info["slots"][info["active"]]
        assert active["version"] == version
        if version == "1.0.0":
            outcomes["old"] += 1
            assert active["state"] == "good"
            assert all(r["state"] in ("good", "failed") for r in info["slots"].values())
            install(bundle, cert, root, InstallOptions())  # the retry completes
        else:
            outcomes["new"] += 1
            assert active["state"] == "pending"
        commit(root)
        assert _runnable_version(root) == "1.1.0"
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes


def test_sigkill_while_engines_are_built(scratch: Path, fleet: Fleet,
                                         make_bundle: Callable[..., Path]) -> None:
    """An install that builds an engine (TensorRT present: the injected fake builder of
    test_install_engines.py) killed at each of its filesystem steps, the engine's fsyncs
    included: the old release runs until the switch, status repairs, the new one runs its
    engine."""
    from test_install_engines import FakeBuilder, trt_env

    tmp_path = scratch
    cert = load_certificate(fleet[1])
    options = InstallOptions(engine_env=trt_env(FakeBuilder()), build_progress=False)
    template = tmp_path / "template"
    install(make_bundle("1.0.0", golden_count=1), cert, template / "root", options)
    commit(template / "root")
    bundle = make_bundle("1.1.0", seed=1, golden_count=1)
    work = tmp_path / "work"
    _reset(template, work)
    steps: List[str] = []
    fsops.set_step_hook(steps.append)
    try:
        install(bundle, cert, work / "root", options)
    finally:
        fsops.set_step_hook(None)
    assert any(s.startswith("fsync ") and s.endswith(".engine") for s in steps), steps
    old_slot = snapshot(template / "root" / "slots" / "a")
    for at_step in range(len(steps)):
        _reset(template, work)
        root = work / "root"
        code = _killed_install(bundle, cert, root, at_step, 0.0, options)
        assert os.WIFSIGNALED(code), f"not killed at {steps[at_step]}"
        version = _runnable_version(root)
        if version == "1.0.0":
            assert snapshot(root / "slots" / "a") == old_slot, f"{steps[at_step]} touched 1.0.0"
        info = status(root)
        assert not [n for n in LEFTOVERS if (root / n).exists() or (root / n).is_symlink()]
        if version == "1.0.0":
            install(bundle, cert, root, options)
        commit(root)
        release = active_release(root)
        engine, _ = release.runnable("auto")
        assert release.manifest.version == "1.1.0" and engine.suffix == ".engine", info
        with load_backend("onnxruntime", engine) as model:  # the fake engine is ONNX bytes
            golden = load_golden(release.path / release.manifest.golden)
            logits = model.infer(preprocess_batch(list(golden.images), model.spec)).logits
        np.testing.assert_allclose(logits, golden.expected, atol=1e-4)


def _killed(action: Callable[[], object], at_step: Optional[int], after_s: float = 0.0) -> int:
    """Fork, run ``action`` with a SIGKILL at filesystem step ``at_step`` (or, with no step,
    after ``after_s`` seconds); the child's status. A child that hangs fails the test."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            if at_step is not None:
                seen = [0]

                def hook(name: str) -> None:
                    if seen[0] == at_step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    seen[0] += 1
                fsops.set_step_hook(hook)
            action()
        finally:
            os._exit(0)
    if at_step is None:
        time.sleep(after_s)
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            return code
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("child hung")
        time.sleep(0.002)


def test_sigkill_during_rollback_and_commit(scratch: Path, fleet: Fleet,
                                            make_bundle: Callable[..., Path]) -> None:
    """Rollback (by request) and commit killed at each of their filesystem steps: a complete
    release always runs, and status leaves either the rollback done or not started."""
    from edge_resnet.bundle.install import rollback

    tmp_path = scratch
    cert = load_certificate(fleet[1])
    template = tmp_path / "template"
    install(make_bundle("1.0.0", golden_count=1), cert, template / "root", InstallOptions())
    commit(template / "root")
    install(make_bundle("1.1.0", seed=1, golden_count=1), cert, template / "root",
            InstallOptions())
    work = tmp_path / "work"
    for name, action, results in (
            ("rollback", lambda: rollback(work / "root"), {("1.0.0", "good"), ("1.1.0", "pending")}),
            ("commit", lambda: commit(work / "root"), {("1.1.0", "good"), ("1.1.0", "pending")})):
        _reset(template, work)
        steps: List[str] = []
        fsops.set_step_hook(steps.append)
        try:
            action()
        finally:
            fsops.set_step_hook(None)
        assert steps, name
        seen = set()
        for at_step in range(len(steps)):
            _reset(template, work)
            code = _killed(action, at_step)
            assert os.WIFSIGNALED(code), f"{name} not killed at {steps[at_step]}"
            version = _runnable_version(work / "root")
            info = status(work / "root")
            record = info["slots"][info["active"]]
            assert record["version"] == version
            assert not [n for n in LEFTOVERS if (work / "root" / n).exists()]
            seen.add((version, record["state"]))
        assert seen <= results, (name, seen)
