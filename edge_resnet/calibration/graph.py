"""Graph queries shared by the QDQ writer, the checker and mixed precision.

A ResNet here means: one 4-D image input, Conv layers, and residual ``Add`` nodes whose two
inputs are both activations (not constants). Anything else is refused up front with a
:class:`ModelError`, before any statistics or artifacts are produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from edge_resnet.core import ModelError

__all__ = ["GraphIndex", "ResnetLayout", "resnet_layout"]


class GraphIndex:
    """Producer/consumer maps of one ONNX graph."""

    def __init__(self, model: "object") -> None:
        graph = model.graph  # type: ignore[attr-defined]
        self.graph = graph
        self.initializers = {i.name: i for i in graph.initializer}
        self.producer: Dict[str, object] = {}
        self.consumers: Dict[str, List[object]] = {}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def is_constant(self, name: str) -> bool:
        node = self.producer.get(name)
        return name in self.initializers or (
            node is not None and node.op_type == "Constant")  # type: ignore[attr-defined]


@dataclass
class ResnetLayout:
    """The nodes that matter for INT8 placement, by name."""

    convs: List[str]
    residual_adds: List[str]
    fc: List[str]


def resnet_layout(model: "object") -> ResnetLayout:
    """Find convs, residual adds and the classifier; :class:`ModelError` if not ResNet-like."""
    index = GraphIndex(model)
    graph = index.graph
    inputs = [i for i in graph.input if i.name not in index.initializers]
    if len(inputs) != 1:
        raise ModelError(f"expected one image input, the graph has {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelError(f"input {inputs[0].name!r} is {len(dims)}-D; a ResNet takes 4-D images")
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    adds = [n.name for n in graph.node if n.op_type == "Add" and len(n.input) == 2
            and not any(index.is_constant(x) for x in n.input)]
    fc = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    if len(convs) < 2 or not adds:
        raise ModelError(
            f"this is not a ResNet-like graph ({len(convs)} Conv, {len(adds)} residual Add "
            "nodes); edge-resnet calibrates ResNet classifiers exported by `edge-resnet export`")
    return ResnetLayout(convs=convs, residual_adds=adds, fc=fc)


def name_nodes(model: "object") -> None:
    """Give every unnamed node a unique name in place (ORT's quantizer selects nodes by name)."""
    seen = set()
    for i, node in enumerate(model.graph.node):  # type: ignore[attr-defined]
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
