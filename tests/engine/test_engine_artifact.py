"""Engine sidecars embed the engine's provenance record (ArtifactInfo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import onnx
import pytest

from edge_resnet.core import ArtifactInfo, ModelError, ModelSpec
from edge_resnet.devices.plan import BatchProfile, BuildArtifacts, BuildRequest, plan_build
from edge_resnet.devices.profiles import get_profile
from edge_resnet.engine import cache as ec
from edge_resnet.engine.artifacts import describe_onnx, engine_artifact


def _plan(model: Path, out: Path, precision: str = "fp16") -> Any:
    return plan_build(get_profile("orin-nx-16gb"), "10.3.0",
                      BuildArtifacts(models=(describe_onnx(model),)),
                      BuildRequest(precision=precision, out_dir=str(out),
                                   batch=BatchProfile.parse("1:4:8")))


def _build(tmp: Path) -> Dict[str, Any]:
    tmp.write_bytes(b"serialized-engine")
    return {"build_seconds": 0.0}


def test_sidecar_embeds_the_record(digits_onnx: Path, tmp_path: Path) -> None:
    plan = _plan(digits_onnx, tmp_path / "engines")
    sha = describe_onnx(digits_onnx).sha256
    info = engine_artifact(plan, sha)
    assert info is not None
    meta = {p.key: p.value for p in onnx.load(str(digits_onnx), load_external_data=False)
            .metadata_props}
    assert info.spec == ModelSpec.from_metadata(meta)
    assert (info.precision, info.source_sha256, info.source_kind) == ("fp16", sha, "onnx-file")
    entry = ec.get_or_build(plan, sha, "", _build, artifact=info)
    assert ec.read_engine_artifact(entry.engine) == info
    assert json.loads(entry.sidecar.read_text())["artifact"]["version"] == 1
    # a hit keeps the record; an engine built without one reads as None
    assert ec.get_or_build(plan, sha, "", _build, artifact=info).hit
    bare = ec.get_or_build(_plan(digits_onnx, tmp_path / "bare", "fp32"), sha, "", _build)
    assert ec.read_engine_artifact(bare.engine) is None


def test_newer_record_in_a_sidecar_is_refused(digits_onnx: Path, tmp_path: Path) -> None:
    from edge_resnet.backends.tensorrt import _spec_from_record

    plan = _plan(digits_onnx, tmp_path)
    sha = describe_onnx(digits_onnx).sha256
    info = engine_artifact(plan, sha)
    assert info is not None
    entry = ec.get_or_build(plan, sha, "", _build, artifact=info)
    record = json.loads(entry.sidecar.read_text())
    assert _spec_from_record(record, entry.engine) == info.spec  # the backend reads the record
    record["artifact"]["version"] = 2
    entry.sidecar.write_text(json.dumps(record))
    with pytest.raises(ModelError, match="version 2 is newer than this edge-resnet reads"):
        ec.read_engine_artifact(entry.engine)
    with pytest.raises(ModelError, match="version 2 is newer"):
        _spec_from_record(record, entry.engine)


def test_no_record_for_an_onnx_without_metadata(digits_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(digits_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    assert engine_artifact(_plan(bare, tmp_path), "0" * 64) is None
    assert ArtifactInfo.from_metadata({}) is None
