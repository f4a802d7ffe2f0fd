"""Graph queries shared by the QDQ writer, the checker and mixed precision.

A ResNet here means: one 4-D image input, Conv layers, and residual ``Add`` nodes whose two
inputs are both activations (not constants). Anything else is refused up front with a
:class:`ModelError`, before any statistics or artifacts are produced.

Each residual Add has a *main* input (the output of the block's last Conv, which TensorRT fuses
into the Add) and a *shortcut* input (the block input, or the downsample Conv on it). They are
told apart by Conv depth, the number of Convs on the longest path from the graph input: the
main branch is always deeper than its own shortcut (3 Convs against 0 or 1 in a bottleneck
block), whatever the tensors are called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from edge_resnet.core import ModelError

__all__ = ["GraphIndex", "POOL_OPS", "ResnetLayout", "conv_depths", "resnet_layout",
           "residual_inputs"]

POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")


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
    pools: List[str]


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
    pools = [n.name for n in graph.node if n.op_type in POOL_OPS]
    if len(convs) < 2 or not adds:
        raise ModelError(
            f"this is not a ResNet-like graph ({len(convs)} Conv, {len(adds)} residual Add "
            "nodes); edge-resnet calibrates ResNet classifiers exported by `edge-resnet export`")
    return ResnetLayout(convs=convs, residual_adds=adds, fc=fc, pools=pools)


def name_nodes(model: "object") -> None:
    """Give every unnamed node a unique name in place (ORT's quantizer selects nodes by name)."""
    seen = set()
    for i, node in enumerate(model.graph.node):  # type: ignore[attr-defined]
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def conv_depths(index: GraphIndex) -> Dict[str, int]:
    """Tensor -> number of Convs on the longest path from the graph input to it.

    Nodes are visited in dependency order (Kahn), so an unsorted graph gives the same answer;
    Q/DQ and every other non-Conv node pass their deepest input's depth on."""
    depth: Dict[str, int] = {}
    pending = {id(n): sum(1 for i in set(n.input) if i in index.producer)  # type: ignore
               for n in index.graph.node}
    ready = [n for n in index.graph.node if pending[id(n)] == 0]
    while ready:
        node = ready.pop()
        d = max((depth.get(i, 0) for i in node.input), default=0)
        d += 1 if node.op_type == "Conv" else 0  # type: ignore[attr-defined]
        for out in node.output:  # type: ignore[attr-defined]
            depth[out] = d
            for consumer in {id(c): c for c in index.consumers.get(out, [])}.values():
                pending[id(consumer)] -= 1
                if pending[id(consumer)] == 0:
                    ready.append(consumer)
    return depth


def residual_inputs(index: GraphIndex, add: "object",
                    depths: Dict[str, int]) -> Tuple[int, int]:
    """(main input position, shortcut input position) of a residual Add node."""
    inputs = list(add.input)  # type: ignore[attr-defined]
    first, second = depths.get(inputs[0], 0), depths.get(inputs[1], 0)
    if first == second:
        raise ModelError(f"residual Add {add.name!r} has two inputs of the same Conv depth "  # type: ignore[attr-defined]
                         f"({first}); cannot tell its shortcut from its main branch")
    return (0, 1) if first > second else (1, 0)
