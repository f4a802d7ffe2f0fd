"""Engines at install: which engine each model needs here, carried vs built, the record, and the
staging/fsync/health wiring. TensorRT cannot run on the dev machine: "TensorRT present" is an
injected :class:`EngineEnv` whose ``build_engine`` (the seam where the real TensorRT builder is
called) writes the ONNX bytes as the "engine", and whose engine backend is ONNX Runtime, so the
health check runs the staged engine file for real. Everything around the seam (plans, cache keys,
the engine cache's sidecar, fsync, the record, discarding a failed release) is the real code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from tiny_model import write_tiny_model
from edge_resnet.bundle import engines, fsops
from edge_resnet.bundle.create import BundleSpec, create_bundle
from edge_resnet.bundle.engines import EngineEnv, decide_engines
from edge_resnet.bundle.errors import EngineBuildError, HealthCheckError
from edge_resnet.bundle.install import InstallOptions, active_release, commit, install, status, verify
from edge_resnet.bundle.manifest import Manifest
from edge_resnet.bundle.signing import load_certificate
from edge_resnet.core import GateError, ModelError
from edge_resnet.devices.plan import BatchProfile, BuildArtifacts, BuildPlan, BuildRequest, plan_build
from edge_resnet.devices.profiles import get_profile
from edge_resnet.engine.artifacts import describe_onnx
from edge_resnet.engine.cache import cache_key, engine_path, get_or_build, read_sidecar
from edge_resnet.fingerprints import sha256_json
from tamper import snapshot

Fleet = Tuple[Path, Path]
DEVICE, TRT, SM = "orin-nx-16gb", "10.3.0", "8.7"


class FakeBuilder:
    """Stands in for edge_resnet.engine.builder.build_engine: writes ``source`` (default: the
    plan's ONNX) as the engine and remembers each call; ``error`` makes it fail like TensorRT."""

    def __init__(self, source: Optional[Path] = None, error: Optional[Exception] = None) -> None:
        self.source, self.error = source, error
        self.calls: List[Tuple[BuildPlan, Path, Path]] = []

    def __call__(self, plan: BuildPlan, out: Path, final: Path, progress: bool) -> Dict[str, Any]:
        self.calls.append((plan, out, final))
        if self.error is not None:
            raise self.error
        out.write_bytes(Path(self.source or plan.input_model).read_bytes())
        final.with_name(final.name + ".build.log").write_text("[INFO] fake build\n")
        return {"build_seconds": 0.0}


def trt_env(builder: Any, device: Optional[str] = DEVICE, trt: str = TRT) -> EngineEnv:
    return EngineEnv(device, "test", trt, SM, build_engine=builder, engine_backend="onnxruntime")


def _manifest(bundle: Path, fleet: Fleet) -> Manifest:
    return verify(bundle, load_certificate(fleet[1]), InstallOptions(backend="onnxruntime"))


def _host_engine(model: Path, cache: Path, trt: str) -> Path:
    """An engine from the engine cache on the host, keyed as the device computes it."""
    artifact = describe_onnx(model)
    plan = plan_build(get_profile(DEVICE), trt, BuildArtifacts(models=(artifact,)),
                      BuildRequest("fp32", out_dir=str(cache), compute_capability=SM))
    return get_or_build(plan, artifact.sha256, "",
                        lambda tmp: dict(FakeBuilder()(plan, tmp, tmp, False))).engine


# ---- the pure decision -------------------------------------------------------------------


def test_without_tensorrt_the_record_names_the_wanted_engine_and_what_runs(
        make_bundle: Callable[..., Path], fleet: Fleet) -> None:
    manifest = _manifest(make_bundle("1.0.0"), fleet)
    model = manifest.by_role("model")[0].path
    env = EngineEnv(DEVICE, "--device", None, None)
    [decision] = decide_engines(manifest, env, "auto", {}, {model: "onnxruntime"},
                                Path("/s/engines"))
    assert (decision.action, decision.runs, decision.backend, decision.engine) == \
        ("onnx", model, "onnxruntime", None)
    assert decision.detail == (f"wanted a fp32 TensorRT engine for {DEVICE}; TensorRT is not "
                               f"installed here, so {model} runs on onnxruntime")
    with pytest.raises(EngineBuildError, match="backend=tensorrt, but TensorRT is not installed"):
        decide_engines(manifest, env, "tensorrt", {}, {model: "onnxruntime"}, Path("/s/engines"))


def test_with_tensorrt_the_engine_is_planned_and_keyed_like_the_engine_cache(
        make_bundle: Callable[..., Path], fleet: Fleet, tmp_path: Path) -> None:
    manifest = _manifest(make_bundle("1.0.0"), fleet)
    item = manifest.by_role("model")[0]
    staged = write_tiny_model(tmp_path / "staged.onnx")  # same bytes as the payload
    artifacts = {item.path: describe_onnx(staged)}
    out = tmp_path / "engines"
    [decision] = decide_engines(manifest, trt_env(None), "auto", artifacts,
                                {item.path: "onnxruntime"}, out)
    assert decision.action == "build" and decision.backend == "onnxruntime"
    assert decision.plan is not None and decision.key_record is not None
    record = cache_key(decision.plan, item.sha256)
    assert decision.key_record == record and decision.key == sha256_json(record)
    assert (record["device"], record["tensorrt"], record["compute_capability"],
            record["precision"], record["batch"], record["model_sha256"]) == \
        (DEVICE, TRT, SM, "fp32", [1, 1, 1], item.sha256)
    assert decision.runs == "engines/" + engine_path(decision.plan, record).name
    assert f".{DEVICE}.trt{TRT}.fp32.GPU.b1-1-1." in decision.runs
    [asked] = decide_engines(manifest, trt_env(None), "onnxruntime", artifacts,
                             {item.path: "onnxruntime"}, out)
    assert asked.action == "onnx" and "backend onnxruntime asked: no engine" in asked.detail


@pytest.mark.parametrize("device,trt,message", [
    (None, TRT, "has no profile \\(test\\): give device=NAME"),
    ("nano", "8.2.1", "no fp32 engine for nano with TensorRT 8.2.1: TensorRT 8.2.1 is older "
                      "than 8.5"),
    ("orin-nx-16gb", "11.4.1", "does not run on"),
    ("no-such-board", TRT, "unknown device 'no-such-board'"),
])
def test_engines_that_cannot_be_planned_are_refused(
        make_bundle: Callable[..., Path], fleet: Fleet, tmp_path: Path, device: Optional[str],
        trt: str, message: str) -> None:
    manifest = _manifest(make_bundle("1.0.0"), fleet)
    item = manifest.by_role("model")[0]
    artifacts = {item.path: describe_onnx(write_tiny_model(tmp_path / "m.onnx"))}
    with pytest.raises(EngineBuildError, match=message):
        decide_engines(manifest, trt_env(None, device, trt), "auto", artifacts,
                       {item.path: "onnxruntime"}, tmp_path / "engines")


# ---- install with "TensorRT present" -------------------------------------------------------


def test_install_builds_the_missing_engine_into_the_slot_and_checks_it(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet) -> None:
    builder = FakeBuilder()
    steps: List[str] = []
    root = tmp_path / "root"
    fsops.set_step_hook(steps.append)
    try:
        release = install(make_bundle("1.0.0"), load_certificate(fleet[1]), root,
                          InstallOptions(engine_env=trt_env(builder), build_progress=False))
    finally:
        fsops.set_step_hook(None)
    [(plan, out, final)] = builder.calls
    assert Path(plan.out_dir) == root / ".staging" / "engines" and out.parent == final.parent
    [entry] = release.record["engines"]
    assert entry["action"] == "built" and entry["engine"].startswith("engines/")
    engine = release.path / entry["engine"]
    sidecar = read_sidecar(engine)  # the engine cache's sidecar: key and provenance
    assert sha256_json(sidecar["key"]) == entry["key"]
    assert sidecar["artifact"]["precision"] == "fp32" and "spec" in sidecar
    [check] = release.record["health"]
    assert check["ok"] and (check["ran"], check["backend"]) == (entry["engine"], "onnxruntime")
    assert release.runnable("auto") == (engine, "tensorrt")
    assert release.runnable("tensorrt") == (engine, "tensorrt")
    assert release.runnable("onnxruntime") == (release.model, "onnxruntime")
    # every file the build wrote is fsync'd, then its folder, all before the switch
    names = [p.name for p in (root / "current" / "engines").iterdir()]
    assert engine.name in names and engine.name + ".json" in names
    for name in names:
        assert f"fsync {name}" in steps
    switch = steps.index("symlink current.new")
    assert max(steps.index(f"fsync {n}") for n in names) < steps.index("fsync-dir engines") \
        < switch
    assert active_release(root).runnable("auto") == (root / "slots/a" / entry["engine"],
                                                      "tensorrt")


def test_a_build_failure_discards_the_release_and_records_why(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_resnet.cli import main

    root, cert = tmp_path / "root", load_certificate(fleet[1])
    install(make_bundle("1.0.0"), cert, root,
            InstallOptions(engine_env=trt_env(FakeBuilder()), build_progress=False))
    commit(root)
    before = snapshot(root)
    failing = FakeBuilder(error=ModelError("TensorRT could not build the engine: [ERROR] "
                                           "out of memory"))
    monkeypatch.setattr(engines, "detect_env", lambda device: trt_env(failing, device))
    code = main(["bundle", "install", str(make_bundle("1.1.0", seed=1)), "--cert",
                 str(fleet[1]), "--root", str(root), "--device", DEVICE])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and len(failing.calls) == 1, err
    assert ("engine stage failed, 1.1.0 discarded and 1.0.0 kept: models/" in err
            and f"building the fp32 engine for {DEVICE} with TensorRT {TRT} failed: TensorRT "
            "could not build the engine: [ERROR] out of memory" in err)
    assert issubclass(EngineBuildError, GateError)
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "state.json"} == \
        {k: v for k, v in before.items() if k != "state.json"}
    info = status(root)
    assert info["events"][-1]["event"] == "engine-failed"
    assert "out of memory" in info["events"][-1]["detail"]
    assert active_release(root).manifest.version == "1.0.0"
    assert not (root / ".staging").exists()


def test_a_built_engine_that_gives_wrong_logits_fails_the_health_check(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet) -> None:
    wrong = FakeBuilder(source=write_tiny_model(tmp_path / "other.onnx", seed=7))
    root = tmp_path / "root"
    with pytest.raises(HealthCheckError, match=r"models/\S+ \(as engines/\S+\.engine on "
                                               r"onnxruntime\): max \|logit error\|"):
        install(make_bundle("1.0.0"), load_certificate(fleet[1]), root,
                InstallOptions(engine_env=trt_env(wrong), build_progress=False))
    assert not (root / "current").exists() and not (root / ".staging").exists()
    assert status(root)["events"][-1]["event"] == "health-failed"


def test_a_carried_engine_with_this_devices_key_is_used_a_foreign_one_is_not(
        tmp_path: Path, fleet: Fleet) -> None:
    model = write_tiny_model(tmp_path / "tiny.onnx")
    mine = _host_engine(model, tmp_path / "cache", TRT)
    foreign = _host_engine(model, tmp_path / "cache", "8.5.2")  # JetPack 5 on the same module
    bundle = tmp_path / "b.bundle"
    create_bundle(BundleSpec(name="tiny", version="1.0.0", models=[model], key=fleet[0],
                             out=bundle, engines=[("", mine), ("", foreign)]))
    never = FakeBuilder(error=AssertionError("a carried engine must not be rebuilt"))
    release = install(bundle, load_certificate(fleet[1]), tmp_path / "root",
                      InstallOptions(engine_env=trt_env(never), build_progress=False))
    assert never.calls == []
    [entry] = release.record["engines"]
    assert (entry["action"], entry["engine"]) == ("carried", f"engines/{mine.name}")
    assert "the bundle carries it" in entry["detail"]
    assert release.record["health"][0]["ran"] == f"engines/{mine.name}"
    [unused] = release.record["unused_engines"]
    assert unused["engine"] == f"engines/{foreign.name}"
    assert "tensorrt 8.5.2 (this device: 10.3.0)" in unused["reason"]
    # on the same bundle, a device with TensorRT 8.5.2 takes the other engine
    other = install(bundle, load_certificate(fleet[1]), tmp_path / "root2",
                    InstallOptions(engine_env=trt_env(never, trt="8.5.2"), build_progress=False))
    assert other.record["engines"][0]["engine"] == f"engines/{foreign.name}"


def test_cli_on_a_machine_without_tensorrt_says_what_runs_instead(
        tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
        capsys: pytest.CaptureFixture) -> None:
    from edge_resnet.cli import main
    from edge_resnet.devices.detect import detect

    if detect().tensorrt is not None:
        pytest.skip("TensorRT is installed here: this test is about a device without it")
    root = tmp_path / "root"
    carried = _host_engine(write_tiny_model(tmp_path / "tiny.onnx"), tmp_path / "cache", TRT)
    bundle = make_bundle("1.0.0", engines=[("", carried)])
    code = main(["bundle", "install", str(bundle), "--cert", str(fleet[1]), "--root", str(root),
                 "--device", DEVICE])
    out, err = capsys.readouterr()
    said = (f"wanted a fp32 TensorRT engine for {DEVICE}; TensorRT is not installed here, so "
            "models/")
    assert code == 0 and said in out and "runs on onnxruntime" in out, err
    assert f"unused engines/{carried.name}: not used: {said}" in out
    assert main(["bundle", "status", "--root", str(root)]) == 0
    assert said in capsys.readouterr().out
    assert main(["bundle", "status", "--root", str(root), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["slots"]["a"]
    assert record["engines"][0]["action"] == "onnx" and record["engines"][0]["engine"] is None
    assert record["health"][0]["backend"] == "onnxruntime"
    assert active_release(root).runnable("auto") == (active_release(root).model, "auto")


def test_engine_batch_profile(make_bundle: Callable[..., Path], fleet: Fleet,
                              tmp_path: Path) -> None:
    """A dynamic-batch model gets --engine-batch (default 1); a fixed-batch one only its own."""
    from edge_resnet.devices.plan import OnnxArtifact

    manifest = _manifest(make_bundle("1.0.0"), fleet)
    item = manifest.by_role("model")[0]
    dynamic = {item.path: OnnxArtifact(str(tmp_path / "m.onnx"), "fp32", 17, batch=None)}
    choices = {item.path: "onnxruntime"}
    for batch, expected in ((None, [1, 1, 1]), (BatchProfile(1, 4, 8), [1, 4, 8])):
        [decision] = decide_engines(manifest, trt_env(None), "auto", dynamic, choices,
                                    tmp_path / "engines", batch)
        assert decision.key_record is not None and decision.key_record["batch"] == expected
        assert f".b{expected[0]}-{expected[1]}-{expected[2]}." in decision.runs
    fixed = {item.path: describe_onnx(write_tiny_model(tmp_path / "fixed.onnx"))}
    with pytest.raises(EngineBuildError, match="has a fixed batch of 1: use batch profile 1"):
        decide_engines(manifest, trt_env(None), "auto", fixed, choices, tmp_path / "engines",
                       BatchProfile(1, 1, 4))
