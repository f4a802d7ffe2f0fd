"""Describe the files a build starts from, so the pure planner never touches disk.

``describe_onnx`` reads an ONNX file's header facts (opset, input type and batch dimension,
whether it is QDQ / FP16 / FP32, its sha256) without loading weights into memory twice;
``read_cache_header`` reads ``TRT-<version>-<calibrator>`` from a calibration cache.
Device side: Python 3.8, no torch (onnx is a core dependency).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from edge_resnet.core import ArtifactInfo, InputError, ModelError
from edge_resnet.devices.plan import BuildArtifacts, BuildPlan, OnnxArtifact
from edge_resnet.fingerprints import sha256_file

__all__ = ["collect_artifacts", "describe_onnx", "engine_artifact", "model_metadata",
           "read_cache_header"]

_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
# onnx.TensorProto element types the plan distinguishes.
_ELEM = {1: "float32", 10: "float16", 2: "uint8"}


def describe_onnx(path: "str | Path") -> OnnxArtifact:
    """Kind (fp32/fp16/qdq), opset, input dtype/name/batch and sha256 of one ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one input, found {[i.name for i in inputs]}")
    tensor_type = inputs[0].type.tensor_type
    dtype = _ELEM.get(tensor_type.elem_type)
    if dtype is None:
        raise ModelError(f"{path}: input element type {tensor_type.elem_type} is not float32, "
                         "float16 or uint8")
    dims = tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    ops = {n.op_type for n in graph.node}
    fp16_weights = any(i.data_type == 10 for i in graph.initializer)
    kind = "qdq" if {"QuantizeLinear", "DequantizeLinear"} & ops else (
        "fp16" if dtype == "float16" or fp16_weights else "fp32")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxArtifact(path=str(path), kind=kind, opset=opset, input_dtype=dtype,
                        input_name=inputs[0].name, batch=batch,
                        sha256=sha256_file(path).sha256)


def model_metadata(path: "str | Path") -> Dict[str, str]:
    """The ``edge_resnet.*`` metadata_props (model spec, precision) to copy into an engine's
    sidecar: an engine file has no metadata of its own."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("edge_resnet.")}


def engine_artifact(plan: BuildPlan, model_sha256: str) -> Optional[ArtifactInfo]:
    """The provenance record of the engine ``plan`` builds: the ONNX's own record (or one made
    from its spec) with the engine's precision and the ONNX file's sha256 as its source. None
    for an ONNX without edge-resnet metadata (there is no spec to record)."""
    from edge_resnet import __version__

    meta = model_metadata(plan.input_model)
    if "edge_resnet.labels" not in meta:
        return None
    return ArtifactInfo.derived(meta, precision=plan.precision, source_sha256=model_sha256,
                               source_kind="onnx-file", sdk_version=__version__)


def read_cache_header(path: "str | Path") -> Tuple[int, str]:
    """(version number, calibrator class) from the cache's first line."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            first = fh.readline().strip()
    except OSError as exc:
        raise InputError(f"cannot read calibration cache {path}: {exc}") from exc
    match = _HEADER.match(first)
    if match is None:
        raise InputError(f"{path} is not a TensorRT calibration cache (first line {first!r}, "
                         "expected TRT-<version>-<calibrator>)")
    return int(match.group(1)), match.group(2)


def collect_artifacts(models: Sequence["str | Path"],
                      calibration_cache: "Optional[str | Path]" = None) -> BuildArtifacts:
    described = tuple(describe_onnx(m) for m in models)
    if calibration_cache is None:
        return BuildArtifacts(models=described)
    return BuildArtifacts(models=described, calibration_cache=str(calibration_cache),
                          cache_header=read_cache_header(calibration_cache),
                          cache_sha256=sha256_file(calibration_cache).sha256)
