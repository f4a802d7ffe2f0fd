"""``export --dla-head``: rewrite a ResNet head so the DLA runs all of it but one reshape.

A torchvision ResNet exports its head as GlobalAveragePool → Flatten → Gemm. On the DLA,
TensorRT imports GlobalAveragePool as a Reduce(AVG), which the DLA does not run, Flatten is not
supported, and the FC only with constant weights, so the whole head falls back to the GPU
(facts doc, "ResNet50 head on DLA"). NVIDIA's MLPerf ResNet50 rewrites it as AveragePool with a
kernel the size of the feature map and the FC as a 1x1 Conv; we do the same and end with one
Flatten to keep the ``logits`` output N x classes (that reshape is the one GPU layer left).
A ``features`` output (the pooled vector) keeps its values: its Flatten now reads the
AveragePool. Every rewrite is proved against the original graph on images (ONNX Runtime).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.core import InputError, ModelError

__all__ = ["prove_dla_head", "rewrite_dla_head"]


def _consumers(graph: Any, name: str) -> List[Any]:
    return [n for n in graph.node if name in n.input]


def _spatial_size(model: Any, tensor: str) -> Tuple[int, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
                return int(dims[2].dim_value), int(dims[3].dim_value)
    raise ModelError(f"cannot tell the spatial size of {tensor!r} (the pooled feature map); "
                     "export at a fixed resolution")


def _find_head(graph: Any) -> Tuple[Any, Any, Any]:
    pools = [n for n in graph.node if n.op_type == "GlobalAveragePool"]
    if len(pools) != 1:
        raise ModelError(f"expected one GlobalAveragePool (a ResNet head), found {len(pools)}")
    flat = _consumers(graph, pools[0].output[0])
    if len(flat) != 1 or flat[0].op_type != "Flatten":
        raise ModelError("the GlobalAveragePool does not feed a single Flatten: not a "
                         "torchvision ResNet head")
    gemm = [n for n in _consumers(graph, flat[0].output[0]) if n.op_type == "Gemm"]
    if len(gemm) != 1:
        raise ModelError("the pooled vector does not feed one Gemm (the FC)")
    return pools[0], flat[0], gemm[0]


def _gemm_weights(graph: Any, gemm: Any) -> Tuple[np.ndarray, Optional[str]]:
    from onnx import helper, numpy_helper

    attrs: Dict[str, Any] = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get("transB", 0) != 1 or attrs.get("alpha", 1.0) != 1.0 or \
            attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0) != 0:
        raise ModelError(f"FC Gemm attributes {attrs} are not torchvision's (transB=1)")
    inits = {i.name: i for i in graph.initializer}
    if gemm.input[1] not in inits:
        raise ModelError("the FC weights are not constant initializers; the DLA needs them so")
    bias = gemm.input[2] if len(gemm.input) > 2 and gemm.input[2] else None
    return numpy_helper.to_array(inits[gemm.input[1]]), bias


def rewrite_dla_head(model: Any) -> Any:
    """A copy of ``model`` (onnx.ModelProto) with the DLA-friendly head."""
    from onnx import checker, helper, numpy_helper

    out = copy.deepcopy(model)
    graph = out.graph
    pool, flat, gemm = _find_head(graph)
    height, width = _spatial_size(out, pool.input[0])
    weight, bias = _gemm_weights(graph, gemm)
    classes, channels = weight.shape
    conv_w = numpy_helper.from_array(weight.reshape(classes, channels, 1, 1),
                                     gemm.input[1] + ".as_1x1_conv")
    graph.initializer.append(conv_w)
    avg = helper.make_node("AveragePool", [pool.input[0]], [pool.output[0]],
                           name="dla_head/AveragePool", kernel_shape=[height, width])
    conv_out = gemm.output[0] + ".nchw"
    conv = helper.make_node("Conv", [pool.output[0], conv_w.name] + ([bias] if bias else []),
                            [conv_out], name="dla_head/fc_as_conv", kernel_shape=[1, 1])
    to_logits = helper.make_node("Flatten", [conv_out], [gemm.output[0]],
                                 name="dla_head/Flatten", axis=1)
    nodes = list(graph.node)
    nodes[nodes.index(pool)] = avg
    at = nodes.index(gemm)
    nodes[at:at + 1] = [conv, to_logits]
    outputs = {o.name for o in graph.output}
    if flat.output[0] not in outputs and not [n for n in nodes if flat.output[0] in n.input
                                              and n is not flat]:
        nodes.remove(flat)  # the pooled vector fed only the FC
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    entry = out.metadata_props.add()
    entry.key, entry.value = "edge_resnet.graph_rewrite", '"dla_head"'  # JSON, like the spec
    checker.check_model(out)
    return out


def prove_dla_head(original: "str | Path", rewritten: "str | Path",
                   images: Sequence[np.ndarray], **thresholds: Any) -> Any:
    """ParityReport of the rewritten graph against the original on ``images`` (ONNX Runtime);
    raises ParityError beyond the export thresholds."""
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.export import parity

    if not images:
        raise InputError("the DLA-head rewrite needs images to prove it")
    with OnnxRuntimeBackend(original) as ref, OnnxRuntimeBackend(rewritten) as cand:
        a = parity._backend_logits(ref, images, 8)
        b = parity._backend_logits(cand, images, 8)
    report = parity.compare_logits(a, b, reference_name="onnxruntime:plain-head",
                                   candidate_name="onnxruntime:dla-head", **thresholds)
    return parity._raise_if_failed(report)
