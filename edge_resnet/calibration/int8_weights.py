"""Store the weights of a QDQ model as int8: DequantizeLinear reads int8 initializers.

A QDQ model from calibration keeps float weights and quantizes them in-graph
(``W -> QuantizeLinear -> DequantizeLinear -> Conv``). Quantizing them once here, with the same
scales, zero points and round-half-to-even saturation ONNX ``QuantizeLinear`` specifies, leaves
``int8 W_q -> DequantizeLinear -> Conv``: the dequantized weights are bit-identical, so the model
computes exactly what it computed before, and the file is ~4x smaller (what a fleet sends over a
cellular link). TensorRT's explicit-quantization guide documents such pre-quantized weights
("Quantized Weights": an IDequantizeLayer between the weights and the operator) in its current
(10.x) documentation; for TensorRT whose support cannot be sourced (8.5 on JetPack 5) keep the
float-weight model. Host side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge_resnet.core import CalibrationError, InputError, ModelError
from edge_resnet.io_utils import atomic_path

__all__ = ["INT8_WEIGHTS_KEY", "Int8WeightsResult", "has_int8_weights", "int8_weights",
           "int8_weights_file"]

INT8_WEIGHTS_KEY = "edge_resnet.int8_weights"


@dataclass(frozen=True)
class Int8WeightsResult:
    """How many weight tensors were converted, and the file sizes before/after (bytes)."""

    converted: int
    bytes_before: int
    bytes_after: int


def _axis(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 1


def _quantize(weight: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear for int8: saturate(round_half_even(x / scale) + zero_point)."""
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * weight.ndim
        shape[axis % weight.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    quotient = weight.astype(np.float32) / scale.astype(np.float32)
    return np.clip(np.rint(quotient) + zero.astype(np.float32), -128, 127).astype(np.int8)


def _weight_quantizers(model: Any) -> List[Any]:
    """QuantizeLinear nodes on float initializers whose only consumers are DequantizeLinear."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    consumers: Dict[str, List[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    found = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        if inits[node.input[0]].data_type != TensorProto.FLOAT or len(node.input) < 3:
            continue
        if not all(i in inits for i in node.input[1:3]) or node.output[0] in outputs:
            continue
        if all(c.op_type == "DequantizeLinear" for c in consumers.get(node.output[0], [])):
            found.append(node)
    return found


def int8_weights(model: Any) -> int:
    """Convert ``model`` (an ONNX ModelProto) in place; return how many weights were converted."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    quantizers = _weight_quantizers(model)
    used: Dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            used[name] = used.get(name, 0) + 1
    for node in quantizers:
        weight, scale, zero = (numpy_helper.to_array(inits[n]) for n in node.input[:3])
        if zero.dtype != np.int8:
            raise CalibrationError(f"{node.name}: zero point is {zero.dtype}; int8 weights need "
                                   "an int8 QDQ model")
        q = _quantize(weight, scale, zero, _axis(node))
        model.graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        model.graph.node.remove(node)
        if used[node.input[0]] == 1:
            model.graph.initializer.remove(inits[node.input[0]])
    if quantizers:
        meta = [p for p in model.metadata_props if p.key == INT8_WEIGHTS_KEY]
        for prop in meta:
            model.metadata_props.remove(prop)
        model.metadata_props.add(key=INT8_WEIGHTS_KEY, value=json.dumps(True))
    return len(quantizers)


def has_int8_weights(model: Any) -> bool:
    return any(p.key == INT8_WEIGHTS_KEY and json.loads(p.value) for p in model.metadata_props)


def int8_weights_file(src: "str | Path", dst: "str | Path") -> Int8WeightsResult:
    """Write ``dst``: ``src`` (an INT8 QDQ ONNX) with int8 weight initializers; checked."""
    import onnx

    from edge_resnet.calibration.checker import check_qdq

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise InputError("write the int8-weights model to a new file, not over its source")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{src} is not an ONNX model: {exc}") from None
    count = int8_weights(model)
    if count == 0:
        raise InputError(f"{src} has no QuantizeLinear on float weight initializers; is it an "
                         "INT8 QDQ model from `edge-resnet calibrate`?")
    violations = check_qdq(model)
    if violations:
        raise CalibrationError(f"{dst}: the int8-weights model breaks TensorRT QDQ rules: "
                               + "; ".join(str(v) for v in violations[:3]))
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Int8WeightsResult(count, src.stat().st_size, dst.stat().st_size)
