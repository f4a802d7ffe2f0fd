"""QDQ ONNX for TensorRT explicit quantization, written with ONNX Runtime's quantizer.

Placement (what TensorRT fuses, per NVIDIA's explicit-quantization guide):
- every Conv: Q/DQ on its activation input (per-tensor) and on its weight (per-channel, axis 0),
  bias left float; no Q/DQ on the Conv output, so Conv+bias+ReLU fuse into one INT8 kernel;
- every residual Add: Q/DQ on both inputs, so TensorRT fuses the Add into the Conv before it;
- the classifier (Gemm/MatMul) stays float by default: it is < 0.1 % of ResNet50's MACs and
  its output is the logits themselves, so INT8 there costs accuracy and buys no speed
  (``quantize_fc=True`` quantizes it too).
Symmetric INT8 everywhere (zero point 0, activations scale = amax/127, weights [-127, 127]),
one dedicated Q/DQ pair per consumer (TensorRT fuses each pair into its consumer), float
weights with a Q/DQ pair (the form pytorch-quantization exports and TensorRT 8.0+ parses).
The ranges come from :mod:`edge_resnet.calibration.methods`, not from ORT's calibrators.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np

from edge_resnet.calibration.checker import FLOAT_NODES_KEY, check_qdq
from edge_resnet.calibration.graph import GraphIndex, name_nodes, resnet_layout
from edge_resnet.core import CalibrationError, DependencyError, InputError
from edge_resnet.io_utils import atomic_path

__all__ = ["QdqOptions", "build_qdq", "quantized_tensors", "save_model", "set_metadata"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QdqOptions:
    """What to quantize. ``float_nodes``: Conv/Add nodes deliberately kept float (mixed mode)."""

    quantize_fc: bool = False
    float_nodes: Tuple[str, ...] = ()
    method: str = ""


def quantized_tensors(model: "object", options: QdqOptions = QdqOptions()) -> List[str]:
    """Activation tensors that get a Q/DQ pair: inputs of quantized Convs (and FC), both inputs
    of residual Adds."""
    index = GraphIndex(model)
    layout = resnet_layout(model)
    nodes = {n.name: n for n in index.graph.node}
    names: List[str] = []
    chosen = [c for c in layout.convs + layout.residual_adds if c not in options.float_nodes]
    if options.quantize_fc:
        chosen += layout.fc
    for node_name in chosen:
        node = nodes[node_name]
        inputs = node.input[:1] if node.op_type != "Add" else node.input
        names.extend(x for x in inputs if not index.is_constant(x) and x not in names)
    return names


def set_metadata(model: "object", values: Mapping[str, object]) -> None:
    """Set (replace) ``metadata_props`` entries, values JSON-encoded as the SDK does."""
    props = model.metadata_props  # type: ignore[attr-defined]
    keep = [(p.key, p.value) for p in props if p.key not in values]
    del props[:]
    for key, value in keep:
        props.add(key=key, value=value)
    for key, value in values.items():
        props.add(key=key, value=json.dumps(value))


def _prepare(model: "object") -> "object":
    import onnx
    from onnx import version_converter

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # type: ignore[arg-type]
    opset = max(o.version for o in copy.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        log.info("converting opset %d -> 13 (per-channel Q/DQ needs 13)", opset)
        copy = version_converter.convert_version(copy, 13)
    name_nodes(copy)
    return onnx.shape_inference.infer_shapes(copy)


def build_qdq(model: "object", ranges: Mapping[str, float],
              options: QdqOptions = QdqOptions()) -> "object":
    """Return the QDQ model for ``ranges`` (tensor -> amax); checked against TensorRT rules."""
    try:
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise DependencyError("onnxruntime's quantization tools are missing") from exc
    prepared = _prepare(model)
    layout = resnet_layout(prepared)
    unknown = set(options.float_nodes) - set(layout.convs) - set(layout.residual_adds)
    if unknown:
        raise InputError(f"float_nodes {sorted(unknown)} are not Conv/Add nodes of this model")
    wanted = quantized_tensors(prepared, options)
    missing = [t for t in wanted if t not in ranges]
    if missing:
        raise CalibrationError(f"no calibrated range for tensors {missing[:5]} (statistics from "
                               "another model or an incomplete statistics file)")
    data = {t: TensorData(lowest=np.float32(-ranges[t]), highest=np.float32(ranges[t]))
            for t in wanted}
    nodes = [c for c in layout.convs + layout.residual_adds if c not in options.float_nodes]
    op_types = ["Conv", "Add"] + (["Gemm", "MatMul"] if options.quantize_fc else [])
    if options.quantize_fc:
        nodes += layout.fc
    quantizer = QDQQuantizer(
        prepared, True, False, QuantType.QInt8, QuantType.QInt8,
        TensorsData(CalibrationMethod.MinMax, data), nodes, [], op_types,
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
         "AddQDQPairToWeight": True, "DedicatedQDQPair": True,
         "OpTypesToExcludeOutputQuantization": op_types,
         "QDQOpTypePerChannelSupportToAxis": {"Conv": 0}})
    logging.disable(logging.INFO)  # ORT's quantizer logs every bias copy on the root logger
    try:
        quantizer.quantize_model()
    finally:
        logging.disable(logging.NOTSET)
    quantizer.model.topological_sort()  # ORT appends Q/DQ nodes; TensorRT needs sorted nodes
    quantized = quantizer.model.model
    set_metadata(quantized, {"edge_resnet.precision": "int8",
                             "edge_resnet.calibration_method": options.method,
                             FLOAT_NODES_KEY: sorted(options.float_nodes)})
    violations = check_qdq(quantized)
    if violations:
        raise CalibrationError("the QDQ graph breaks TensorRT rules: " +
                               "; ".join(str(v) for v in violations[:5]))
    return quantized


def save_model(model: "object", path: "str | Path") -> Path:
    """Serialise atomically (a crash leaves no half-written model)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise InputError(f"model output {path} should end in .onnx")
    data = model.SerializeToString()  # type: ignore[attr-defined]
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def qdq_scales(model: "object") -> Dict[str, float]:
    """Per-tensor activation scales of a QDQ model: quantized tensor -> scale."""
    from onnx import numpy_helper

    index = GraphIndex(model)
    out: Dict[str, float] = {}
    for node in index.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in index.initializers:
            scale = numpy_helper.to_array(index.initializers[node.input[1]])
            if scale.size == 1:
                out[node.input[0]] = float(scale)
    return out

