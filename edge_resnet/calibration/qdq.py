"""QDQ ONNX for TensorRT explicit quantization, placed the way TensorRT fuses it.

Placement follows TensorRT's developer guide ("Working with Quantized Types" → "Q/DQ
Layer-Placement Recommendations") and matches what NVIDIA ModelOpt's ONNX PTQ writes for
ResNet50 (see ``docs/calibration.md``):
- every Conv: Q/DQ on its activation input (per-tensor) and its weight (per-channel, axis 0),
  bias float, nothing on its output, so Conv+bias+ReLU fuse into one INT8 kernel;
- every residual Add: Q/DQ on the **shortcut input only**. The edge from the block's last Conv
  stays float so TensorRT fuses Conv + Add (+ ReLU) into one kernel with INT8 output; a pair on
  that edge "forces the separation of the convolution from the element-wise addition" (figure 9
  of that section): one more kernel and one more rounding per block;
- MaxPool / GlobalAveragePool inputs: Q/DQ, so the pools run in INT8 and the Conv(+Add+ReLU)
  kernels before them write INT8 (a quarter of the memory traffic); this is where ModelOpt puts
  them too;
- the classifier (Gemm/MatMul) stays float by default: < 0.1 % of ResNet50's MACs, and its output
  is the logits themselves (``quantize_fc=True`` quantizes it too).
Symmetric INT8 everywhere (zero point 0, activation scale = amax/127, weights [-127, 127]), one
dedicated Q/DQ pair per consumer, float weights with a Q/DQ pair (the form pytorch-quantization
exports and TensorRT 8.0+ parses). The pairs are inserted here directly (no ONNX Runtime
quantizer: it cannot put a pair on one Add input only). The ranges come from
:mod:`edge_resnet.calibration.methods`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from edge_resnet.calibration.checker import FLOAT_NODES_KEY, check_qdq
from edge_resnet.calibration.graph import (GraphIndex, conv_depths, name_nodes, resnet_layout,
                                           residual_inputs)
from edge_resnet.core import ARTIFACT_INFO_KEY, ArtifactInfo, CalibrationError, InputError
from edge_resnet.fingerprints import onnx_graph_sha256
from edge_resnet.io_utils import atomic_path

__all__ = ["QdqOptions", "QuantPoint", "build_qdq", "placement", "quantized_tensors",
           "record_artifact", "save_model", "set_metadata"]

log = logging.getLogger(__name__)

_MIN_AMAX = 1e-8  # an all-zero weight channel still needs a positive scale


@dataclass(frozen=True)
class QdqOptions:
    """What to quantize. ``float_nodes``: Conv/Add nodes deliberately kept float (mixed mode)."""

    quantize_fc: bool = False
    float_nodes: Tuple[str, ...] = ()
    method: str = ""


@dataclass(frozen=True)
class QuantPoint:
    """One Q/DQ pair: activation ``tensor`` feeding input ``position`` of node ``node``."""

    tensor: str
    node: str
    position: int


def placement(model: "object", options: QdqOptions = QdqOptions()) -> List[QuantPoint]:
    """Every activation Q/DQ pair of the QDQ model, in graph order (see the module doc)."""
    index = GraphIndex(model)
    layout = resnet_layout(model)
    depths = conv_depths(index)
    floats = set(options.float_nodes)
    fc = set(layout.fc) if options.quantize_fc else set()
    convs, adds, pools = set(layout.convs) - floats, set(layout.residual_adds) - floats, \
        set(layout.pools)
    points: List[QuantPoint] = []
    for node in index.graph.node:
        if node.name in convs or node.name in pools or node.name in fc:
            points.append(QuantPoint(node.input[0], node.name, 0))
        elif node.name in adds:
            shortcut = residual_inputs(index, node, depths)[1]
            points.append(QuantPoint(node.input[shortcut], node.name, shortcut))
    return points


def quantized_tensors(model: "object", options: QdqOptions = QdqOptions()) -> List[str]:
    """Activation tensors that get a Q/DQ pair (each once, in graph order)."""
    return list(dict.fromkeys(p.tensor for p in placement(model, options)))


def set_metadata(model: "object", values: Mapping[str, object]) -> None:
    """Set (replace) ``metadata_props`` entries, values JSON-encoded as the SDK does."""
    props = model.metadata_props  # type: ignore[attr-defined]
    keep = [(p.key, p.value) for p in props if p.key not in values]
    del props[:]
    for key, value in keep:
        props.add(key=key, value=value)
    for key, value in values.items():
        props.add(key=key, value=json.dumps(value))


def record_artifact(target: "object", parent: "object", **changes: Any) -> None:
    """Write ``target``'s provenance record (:class:`~edge_resnet.core.ArtifactInfo`, one JSON
    value under ``edge_resnet.artifact``): ``parent``'s record with ``changes``. A parent
    without edge-resnet metadata (its spec was given by the caller) has no spec to record, so
    nothing is written."""
    from edge_resnet import __version__

    meta = {p.key: p.value for p in parent.metadata_props}  # type: ignore[attr-defined]
    if "edge_resnet.labels" not in meta:
        return
    info = ArtifactInfo.derived(meta, sdk_version=__version__, **changes)
    set_metadata(target, {ARTIFACT_INFO_KEY: info.to_dict()})


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
    return copy


class _Inserter:
    """Adds Q/DQ pairs (scale and zero-point initializers, Q and DQ nodes) to one graph."""

    def __init__(self, model: "object") -> None:
        self.graph = model.graph  # type: ignore[attr-defined]
        self.index = GraphIndex(model)
        self.before: Dict[str, List[object]] = {}  # consumer node name -> pairs to put first

    def _initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def pair(self, node: "object", position: int, scale: np.ndarray, axis: int = 1) -> None:
        """Feed ``node.input[position]`` through a new dedicated Q/DQ pair."""
        from onnx import helper

        tensor = node.input[position]  # type: ignore[attr-defined]
        base = f"{node.name}/input{position}"  # type: ignore[attr-defined]
        s = self._initializer(f"{base}/scale", scale.astype(np.float32))
        z = self._initializer(f"{base}/zero_point", np.zeros(scale.shape, np.int8))
        q = helper.make_node("QuantizeLinear", [tensor, s, z], [f"{base}/quantized"],
                             name=f"{base}/QuantizeLinear")
        dq = helper.make_node("DequantizeLinear", [f"{base}/quantized", s, z],
                              [f"{base}/dequantized"], name=f"{base}/DequantizeLinear")
        if scale.ndim:  # per-channel: the axis the scales run along
            q.attribute.append(helper.make_attribute("axis", axis))
            dq.attribute.append(helper.make_attribute("axis", axis))
        self.before.setdefault(node.name, []).extend([q, dq])  # type: ignore[attr-defined]
        node.input[position] = f"{base}/dequantized"  # type: ignore[attr-defined]

    def weight(self, node: "object") -> None:
        """Per-output-channel symmetric Q/DQ on a Conv (axis 0) or Gemm weight."""
        from onnx import numpy_helper

        name = node.input[1]  # type: ignore[attr-defined]
        if name not in self.index.initializers:
            raise CalibrationError(f"{node.name}: weight {name!r} is not a constant "  # type: ignore[attr-defined]
                                   "initializer; cannot quantize it per channel")
        w = numpy_helper.to_array(self.index.initializers[name])
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)  # type: ignore[attr-defined]
        axis = 0 if node.op_type == "Conv" or trans_b else w.ndim - 1  # type: ignore[attr-defined]
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.maximum(np.abs(w).max(axis=reduce), _MIN_AMAX)
        self.pair(node, 1, (amax / 127.0).astype(np.float32), axis=axis)

    def finish(self) -> None:
        """Put every pair right before its consumer (the graph stays topologically sorted)."""
        nodes = list(self.graph.node)
        del self.graph.node[:]
        for node in nodes:
            self.graph.node.extend(self.before.get(node.name, []))
            self.graph.node.append(node)


def build_qdq(model: "object", ranges: Mapping[str, float],
              options: QdqOptions = QdqOptions()) -> "object":
    """Return the QDQ model for ``ranges`` (tensor -> amax); checked against TensorRT rules."""
    prepared = _prepare(model)
    layout = resnet_layout(prepared)
    unknown = set(options.float_nodes) - set(layout.convs) - set(layout.residual_adds)
    if unknown:
        raise InputError(f"float_nodes {sorted(unknown)} are not Conv/Add nodes of this model")
    points = placement(prepared, options)
    missing = list(dict.fromkeys(p.tensor for p in points if p.tensor not in ranges))
    if missing:
        raise CalibrationError(f"no calibrated range for tensors {missing[:5]} (statistics from "
                               "another model or an incomplete statistics file)")
    inserter = _Inserter(prepared)
    nodes = {n.name: n for n in prepared.graph.node}  # type: ignore[attr-defined]
    for point in points:
        amax = float(ranges[point.tensor])
        if not (np.isfinite(amax) and amax > 0):
            raise CalibrationError(f"tensor {point.tensor!r} has an invalid range {amax}")
        inserter.pair(nodes[point.node], point.position, np.array(amax / 127.0, np.float32))
    weighted = [c for c in layout.convs if c not in options.float_nodes]
    weighted += layout.fc if options.quantize_fc else []
    for name in weighted:
        inserter.weight(nodes[name])
    inserter.finish()
    set_metadata(prepared, {"edge_resnet.precision": "int8",
                            "edge_resnet.calibration_method": options.method,
                            FLOAT_NODES_KEY: sorted(options.float_nodes)})
    record_artifact(prepared, model, precision="int8", calibration_method=options.method,
                    float_nodes=tuple(sorted(options.float_nodes)),
                    source_sha256=onnx_graph_sha256(model), source_kind="onnx-graph")
    violations = check_qdq(prepared)
    if violations:
        raise CalibrationError("the QDQ graph breaks TensorRT rules: " +
                               "; ".join(str(v) for v in violations[:5]))
    return prepared


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

