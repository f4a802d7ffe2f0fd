"""Engine cache: key, file names, sidecars, foreign engines, the writable check and the lock.

The "engine" bytes here are written by a stand-in build function: what is under test is the
cache's bookkeeping, which is pure Python; TensorRT builds are in tests/tensorrt.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from edge_resnet.core import InputError, ModelError
from edge_resnet.devices.plan import BatchProfile, BuildArtifacts, BuildRequest, OnnxArtifact, plan_build
from edge_resnet.devices.profiles import get_profile
from edge_resnet.engine import cache as ec


def _plan(out: Path, device: str = "orin-nx-16gb", version: str = "10.3.0", precision: str = "fp16",
          batch: str = "1:8:16", dla: Any = None) -> Any:
    models = (OnnxArtifact(path="/m/digits.onnx", kind="fp32", opset=17, sha256="a" * 64),)
    return plan_build(get_profile(device), version, BuildArtifacts(models=models),
                      BuildRequest(precision=precision, out_dir=str(out),
                                   batch=BatchProfile.parse(batch), dla_core=dla))


def test_key_changes_with_every_engine_relevant_field(tmp_path: Path) -> None:
    base = ec.cache_key(_plan(tmp_path), "a" * 64)
    variants = [ec.cache_key(_plan(tmp_path), "b" * 64),
                ec.cache_key(_plan(tmp_path, device="agx-orin-64gb"), "a" * 64),
                ec.cache_key(_plan(tmp_path, version="8.6.2"), "a" * 64),
                ec.cache_key(_plan(tmp_path, precision="fp32"), "a" * 64),
                ec.cache_key(_plan(tmp_path, batch="8"), "a" * 64),
                ec.cache_key(_plan(tmp_path, batch="4", dla=0), "a" * 64)]
    names = {ec.engine_path(_plan(tmp_path), base).name}
    for key in variants:
        assert key != base
    assert len({json.dumps(k, sort_keys=True) for k in variants}) == len(variants)
    name = names.pop()
    assert name.startswith("digits.orin-nx-16gb.trt10.3.0.fp16.GPU.b1-8-16.") and name.endswith(".engine")
    with pytest.raises(InputError, match="sha256"):
        ec.cache_key(_plan(tmp_path), "")


def _fake_build(payload: bytes = b"serialized-engine") -> Any:
    def build(tmp: Path) -> Dict[str, Any]:
        tmp.write_bytes(payload)
        return {"build_seconds": 0.0}
    return build


def test_miss_then_hit_and_sidecar(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "engines")
    first = ec.get_or_build(plan, "a" * 64, "", _fake_build())
    assert not first.hit and first.engine.read_bytes() == b"serialized-engine"
    record = ec.read_sidecar(first.engine)
    assert record["format"] == ec.SIDECAR_FORMAT and record["plan"]["precision"] == "fp16"
    assert record["build_seconds"] == 0.0
    second = ec.get_or_build(plan, "a" * 64, "", _fake_build(b"never-built"))
    assert second.hit and second.engine == first.engine
    assert second.engine.read_bytes() == b"serialized-engine"
    assert sorted(p.name for p in (tmp_path / "engines").iterdir() if p.name.startswith(".")) == []


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def broken(tmp: Path) -> Dict[str, Any]:
        tmp.write_bytes(b"half")
        raise ModelError("builder failed")
    with pytest.raises(ModelError, match="builder failed"):
        ec.get_or_build(_plan(tmp_path), "a" * 64, "", broken)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]


def test_foreign_engine_is_refused_before_tensorrt(tmp_path: Path) -> None:
    entry = ec.get_or_build(_plan(tmp_path), "a" * 64, "", _fake_build())
    record = ec.read_sidecar(entry.engine)
    ec.check_compatible(record, "10.3.0", "8.7", "orin-nx-16gb")  # the machine it was built for
    with pytest.raises(ModelError, match="built with TensorRT 10.3.0 on orin-nx-16gb.*runs TensorRT 8.6.2"):
        ec.check_compatible(record, "8.6.2", "8.7")
    with pytest.raises(ModelError, match="compute capability 8.7.*this GPU is.*9.0"):
        ec.check_compatible(record, "10.3.0", "9.0")
    with pytest.raises(ModelError, match="built for orin-nx-16gb, this machine is agx-orin-64gb"):
        ec.check_compatible(record, "10.3.0", "8.7", "agx-orin-64gb")


def test_sidecar_missing_or_other_format(tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"e")
    with pytest.raises(ModelError, match="no sidecar x.engine.json"):
        ec.read_sidecar(engine)
    (tmp_path / "x.engine.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(ModelError, match="'other/9' is not"):
        ec.read_sidecar(engine)


def test_unwritable_folder_is_found_before_building(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not writable.*every start rebuilds"):
        ec.ensure_writable(blocker / "engines")
    built = []
    with pytest.raises(InputError):
        ec.get_or_build(_plan(blocker / "engines"), "a" * 64, "", lambda t: built.append(t) or {})
    assert built == []


def _racer(out: str, log: str) -> None:
    def slow(tmp: Path) -> Dict[str, Any]:
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)
        tmp.write_bytes(b"engine")
        return {}
    ec.get_or_build(_plan(Path(out)), "a" * 64, "", slow)


def test_two_concurrent_builders_build_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_racer, args=(str(tmp_path / "engines"), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("built") == 1
    engines = list((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1 and engines[0].read_bytes() == b"engine"
