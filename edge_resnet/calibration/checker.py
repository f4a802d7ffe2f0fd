"""TensorRT explicit-quantization rules for a QDQ ResNet, checked on the graph.

TensorRT (8.0+) accepts Q/DQ ONNX when quantization is symmetric INT8 (zero point 0), weights are
per-channel on axis 0 of Conv weights, activations per-tensor, opset >= 13. For fusion (TensorRT
developer guide, "Working with Quantized Types" → "Q/DQ Layer-Placement Recommendations"): every
Conv takes a dequantized input and dequantized weights; each residual Add takes a dequantized
*shortcut* input and a float input from its block's last Conv, so TensorRT fuses Conv + Add
(+ ReLU) into one INT8 kernel — a Q/DQ pair on that Conv→Add edge prevents the fusion; pooling
inputs are dequantized so the pools run in INT8. Nodes listed in the model's
``edge_resnet.float_nodes`` metadata (Convs, residual Adds) were deliberately kept float by
accuracy-aware calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import numpy as np

from edge_resnet.calibration.graph import (GraphIndex, conv_depths, resnet_layout,
                                           residual_inputs)

__all__ = ["Violation", "check_qdq", "check_qdq_file", "float_nodes_of"]

FLOAT_NODES_KEY = "edge_resnet.float_nodes"
PLACEMENT_DOC = ('TensorRT developer guide, "Working with Quantized Types" > "Q/DQ Layer-Placement '
                 'Recommendations"')
_INT8 = 3  # TensorProto.INT8


@dataclass(frozen=True)
class Violation:
    node: str
    rule: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule}"


def float_nodes_of(model: "object") -> Set[str]:
    for prop in model.metadata_props:  # type: ignore[attr-defined]
        if prop.key == FLOAT_NODES_KEY:
            return set(json.loads(prop.value))
    return set()


def _const_array(index: GraphIndex, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    if name in index.initializers:
        return numpy_helper.to_array(index.initializers[name])
    node = index.producer.get(name)
    if node is not None and node.op_type == "Constant":  # type: ignore[attr-defined]
        for attr in node.attribute:  # type: ignore[attr-defined]
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
    return None


def _axis(node: "object") -> int:
    for attr in node.attribute:  # type: ignore[attr-defined]
        if attr.name == "axis":
            return int(attr.i)
    return 1


def _check_qdq_node(index: GraphIndex, node: "object") -> List[Violation]:
    out: List[Violation] = []
    name = node.name  # type: ignore[attr-defined]
    inputs = list(node.input)  # type: ignore[attr-defined]
    if len(inputs) < 3 or not inputs[2]:
        out.append(Violation(name, "no zero point given: TensorRT needs an explicit INT8 zero "
                                   "point of 0"))
    else:
        zp = _const_array(index, inputs[2])
        if zp is None:
            out.append(Violation(name, "zero point is not a constant"))
        elif zp.dtype != np.int8:
            out.append(Violation(name, f"zero point type is {zp.dtype}, TensorRT needs int8"))
        elif np.any(zp != 0):
            out.append(Violation(name, "non-zero zero point: TensorRT only supports symmetric "
                                       "quantization"))
    scale = _const_array(index, inputs[1]) if len(inputs) > 1 else None
    if scale is None:
        out.append(Violation(name, "scale is not a constant"))
    elif np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        out.append(Violation(name, "scale must be finite and positive"))
    if node.op_type == "DequantizeLinear":  # type: ignore[attr-defined]
        source = _const_array(index, inputs[0])
        if source is not None and source.dtype != np.int8:
            out.append(Violation(name, f"dequantizes {source.dtype} data; only int8 is allowed "
                                       "(keep biases float)"))
    return out


def _dq_feeding(index: GraphIndex, tensor: str) -> Optional[object]:
    node = index.producer.get(tensor)
    if node is not None and node.op_type == "DequantizeLinear":  # type: ignore[attr-defined]
        return node
    return None


def _per_tensor(index: GraphIndex, dq: "object", consumer: str) -> List[Violation]:
    scale = _const_array(index, dq.input[1]) if len(dq.input) > 1 else None  # type: ignore
    if scale is not None and scale.size > 1:
        return [Violation(consumer, "activation quantized per-channel; TensorRT needs "
                                    "per-tensor activation scales")]
    return []


def _check_conv(index: GraphIndex, node: "object", float_ok: Set[str]) -> List[Violation]:
    name = node.name  # type: ignore[attr-defined]
    act = _dq_feeding(index, node.input[0])  # type: ignore[attr-defined]
    weight = _dq_feeding(index, node.input[1])  # type: ignore[attr-defined]
    if act is None and weight is None and name in float_ok:
        return []
    out: List[Violation] = []
    if act is None:
        out.append(Violation(name, "Conv input is not quantized (no DequantizeLinear feeds it)"))
    else:
        out.extend(_per_tensor(index, act, name))
    if weight is None:
        out.append(Violation(name, "Conv weight is not quantized (no DequantizeLinear feeds it)"))
    elif len(weight.input) > 1:  # type: ignore[attr-defined]
        scale = _const_array(index, weight.input[1])  # type: ignore[attr-defined]
        if scale is not None and scale.size > 1 and _axis(weight) != 0:
            out.append(Violation(name, f"per-channel weight quantization on axis {_axis(weight)};"
                                       " TensorRT needs axis 0 (output channels)"))
    return out


def _check_add(index: GraphIndex, node: "object", depths: Dict[str, int],
               float_ok: Set[str]) -> List[Violation]:
    name = node.name  # type: ignore[attr-defined]
    main, shortcut = residual_inputs(index, node, depths)
    inputs = list(node.input)  # type: ignore[attr-defined]
    main_dq, shortcut_dq = (_dq_feeding(index, inputs[i]) for i in (main, shortcut))
    if name in float_ok and main_dq is None and shortcut_dq is None:
        return []  # kept float on purpose by accuracy-aware calibration
    out: List[Violation] = []
    if shortcut_dq is None:
        out.append(Violation(name, f"residual Add shortcut input {shortcut} ({inputs[shortcut]}) "
                                   "is not quantized; TensorRT needs it in INT8 to fuse the Add "
                                   f"into the block's last Conv ({PLACEMENT_DOC})"))
    else:
        out.extend(_per_tensor(index, shortcut_dq, name))
    if main_dq is not None:
        out.append(Violation(name, f"Q/DQ on the Conv->Add input {main} ({inputs[main]}) "
                                   "prevents TensorRT's Conv+Add fusion (an extra kernel and "
                                   "rounding per block); quantize only the shortcut input "
                                   f"({PLACEMENT_DOC})"))
    return out


def check_qdq(model: "object") -> List[Violation]:
    """Every TensorRT rule the graph breaks, each naming the offending node."""
    index = GraphIndex(model)
    violations: List[Violation] = []
    opset = max((o.version for o in model.opset_import  # type: ignore[attr-defined]
                 if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        violations.append(Violation("<model>", f"opset {opset} < 13: per-channel Q/DQ needs 13"))
    qdq = [n for n in index.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        violations.append(Violation("<model>", "no QuantizeLinear/DequantizeLinear nodes: not an "
                                               "explicitly quantized (QDQ) model"))
    for node in qdq:
        violations.extend(_check_qdq_node(index, node))
    layout = resnet_layout(model)
    float_ok = float_nodes_of(model)
    nodes = {n.name: n for n in index.graph.node}
    for conv in layout.convs:
        violations.extend(_check_conv(index, nodes[conv], float_ok))
    depths = conv_depths(index)
    for add in layout.residual_adds:
        violations.extend(_check_add(index, nodes[add], depths, float_ok))
    for pool in layout.pools:
        if _dq_feeding(index, nodes[pool].input[0]) is None:
            violations.append(Violation(pool, "pooling input is not quantized, so the pool and "
                                              f"the kernel before it run in float ({PLACEMENT_DOC})"))
    return violations


def check_qdq_file(path: "str | Path") -> List[Violation]:
    from edge_resnet.calibration.stats import load_onnx

    return check_qdq(load_onnx(path))
