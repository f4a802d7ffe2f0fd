"""Calibrated artifacts carry the provenance record of the FP32 model they were made from:
QDQ (method, float nodes), FP16 and mixed precision, each with the FP32 graph's fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import onnx
import pytest

from edge_resnet.calibration.fp16 import convert_fp16
from edge_resnet.calibration.graph import resnet_layout
from edge_resnet.calibration.mixed import float_layers
from edge_resnet.calibration.qdq import QdqOptions, build_qdq, quantized_tensors
from edge_resnet.calibration.stats import model_fingerprint
from edge_resnet.core import ArtifactInfo, ModelSpec


def _meta(model: object) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def fp32(digits_onnx: Path) -> object:
    return onnx.load(str(digits_onnx))


def test_qdq_and_mixed_records(fp32: object) -> None:
    spec = ModelSpec.from_metadata(_meta(fp32))
    parent = ArtifactInfo.derived(_meta(fp32))  # the export's record, or one from its spec
    ranges = {name: 4.0 for name in quantized_tensors(fp32)}
    first_conv = resnet_layout(build_qdq(fp32, ranges)).convs[0]
    qdq = build_qdq(fp32, ranges, QdqOptions(method="minmax", float_nodes=(first_conv,)))
    info = ArtifactInfo.from_metadata(_meta(qdq))
    assert info is not None
    assert (info.precision, info.calibration_method, info.float_nodes) == \
        ("int8", "minmax", (first_conv,))
    assert (info.source_sha256, info.source_kind) == (model_fingerprint(fp32), "onnx-graph")
    assert info.spec == spec and info.source == parent.source
    second = resnet_layout(qdq).convs[1]
    mixed = float_layers(qdq, [second])
    again = ArtifactInfo.from_metadata(_meta(mixed))
    assert again is not None and again.float_nodes == tuple(sorted((first_conv, second)))
    assert (again.precision, again.calibration_method, again.source_sha256) == \
        ("int8", "minmax", info.source_sha256)


def test_fp16_record(fp32: object) -> None:
    half = convert_fp16(fp32)
    info = ArtifactInfo.from_metadata(_meta(half))
    assert info is not None
    assert (info.precision, info.calibration_method, info.float_nodes) == ("fp16", None, ())
    assert info.source_sha256 == model_fingerprint(fp32)
    assert info.spec == ModelSpec.from_metadata(_meta(fp32))


def test_no_record_without_a_spec(fp32: object) -> None:
    bare = onnx.ModelProto()
    bare.CopyFrom(fp32)  # type: ignore[arg-type]
    del bare.metadata_props[:]
    assert ArtifactInfo.from_metadata(_meta(convert_fp16(bare))) is None


def test_one_graph_fingerprint_values_unchanged(fp32: object) -> None:
    """Statistics files on disk hold the old ``model_fingerprint`` value: the shared
    implementation gives exactly that value, and metadata does not change it."""
    import hashlib

    from edge_resnet.fingerprints import onnx_graph_sha256

    old = hashlib.sha256(fp32.graph.SerializeToString(deterministic=True)).hexdigest()  # type: ignore[attr-defined]
    assert model_fingerprint(fp32) == onnx_graph_sha256(fp32) == old
    half_meta = onnx.ModelProto()
    half_meta.CopyFrom(fp32)  # type: ignore[arg-type]
    half_meta.metadata_props.add(key="edge_resnet.note", value='"x"')
    assert onnx_graph_sha256(half_meta) == old
