"""The provenance record ``ArtifactInfo``: one versioned JSON value, read back with json.loads,
newer versions and malformed records refused."""

from __future__ import annotations

import json

import pytest

from edge_resnet.core import (ARTIFACT_INFO_KEY, ARTIFACT_INFO_VERSION, ArtifactInfo, InputError,
                              ModelError, ModelSpec)

SPEC = ModelSpec(labels=("cat", "dog"), resolution=32, resize=36, label_ids=("n1", "n2"),
                 fused_preprocessing=True, layout="NHWC", color_order="BGR",
                 extra={"source": "x"})


def _info(**changes: object) -> ArtifactInfo:
    base = dict(spec=SPEC, precision="int8", source_sha256="ab" * 32, source_kind="onnx-graph",
                source="torchvision:IMAGENET1K_V2", sdk_version="0.1.0",
                calibration_method="entropy", float_nodes=("conv_1", "add_3"),
                created="2026-11-23T05:00:00Z")
    base.update(changes)
    return ArtifactInfo(**base)  # type: ignore[arg-type]


def test_one_json_value_round_trips() -> None:
    info = _info()
    meta = info.to_metadata()
    assert list(meta) == [ARTIFACT_INFO_KEY] == ["edge_resnet.artifact"]
    data = json.loads(meta[ARTIFACT_INFO_KEY])
    assert data["version"] == ARTIFACT_INFO_VERSION == 1
    assert data["precision"] == "int8" and data["calibration_method"] == "entropy"
    assert data["float_nodes"] == ["conv_1", "add_3"]
    assert data["spec"]["labels"] == ["cat", "dog"] and data["spec"]["layout"] == "NHWC"
    assert ArtifactInfo.from_metadata(meta) == info
    assert ArtifactInfo.from_json(info.to_json()).spec == SPEC
    assert ArtifactInfo.from_metadata({"edge_resnet.precision": '"fp32"'}) is None


def test_newer_or_malformed_records_are_refused() -> None:
    data = _info().to_dict()
    with pytest.raises(ModelError, match=r"artifact record version 2 is newer than this "
                                         r"edge-resnet reads \(version 1\): upgrade edge-resnet"):
        ArtifactInfo.from_dict(dict(data, version=2))
    for bad in (None, "1", 0, True):
        with pytest.raises(ModelError, match="no valid version"):
            ArtifactInfo.from_dict(dict(data, version=bad))
    with pytest.raises(ModelError, match="not valid JSON"):
        ArtifactInfo.from_metadata({ARTIFACT_INFO_KEY: "{not json"})
    with pytest.raises(ModelError, match="not a JSON object"):
        ArtifactInfo.from_json("[1, 2]")
    with pytest.raises(ModelError, match="no model spec"):
        ArtifactInfo.from_dict(dict(data, spec=None))
    with pytest.raises(ModelError, match="artifact record is invalid: artifact precision"):
        ArtifactInfo.from_dict(dict(data, precision="int4"))
    with pytest.raises(ModelError, match="edge-resnet metadata is invalid"):
        ArtifactInfo.from_dict(dict(data, spec=dict(data["spec"], resize=8)))
    with pytest.raises(InputError, match="artifact precision must be one of fp32, fp16, int8"):
        _info(precision="bf16")


def test_unknown_fields_of_the_same_version_are_ignored() -> None:
    data = dict(_info().to_dict(), comment="added by a tool")
    assert ArtifactInfo.from_dict(data) == _info()


def test_derived_from_a_record_or_from_a_legacy_spec() -> None:
    parent = _info(precision="fp32", calibration_method=None, float_nodes=())
    child = ArtifactInfo.derived(parent.to_metadata(), precision="fp16", source_sha256="cd" * 32)
    assert (child.precision, child.source_sha256, child.source) == \
        ("fp16", "cd" * 32, "torchvision:IMAGENET1K_V2")
    assert child.spec == SPEC and child.created != "" and child.version == 1
    legacy = dict(SPEC.to_metadata(), **{"edge_resnet.precision": '"int8"'})
    old = ArtifactInfo.derived(legacy, source_kind="onnx-graph")
    assert (old.precision, old.spec, old.source_kind, old.calibration_method) == \
        ("int8", SPEC, "onnx-graph", None)
    with pytest.raises(ModelError, match="carries no edge-resnet metadata"):
        ArtifactInfo.derived({})
