"""Accuracy-aware mixed precision: keep the most sensitive layers (Convs and residual Adds) float
until the top-1 drop on a held-out labeled split is within budget.

1. Sensitivity: for each layer, the model with *only that layer* quantized (every other Conv and
   residual Add float); the score is the mean logit KL divergence to FP32 on a subset of the
   held-out images (a continuous signal; top-1 on a few hundred images is too coarse to rank
   69 layers). Measuring each layer alone keeps one badly calibrated layer from masking
   another: with "all layers but one" quantized, two broken layers each look harmless, because
   floating either leaves the other one breaking the output.
2. Selection: float the top-k layers for k = 1, 2, 4, ... until the top-1 drop on the whole
   held-out split is within budget, then bisect for the smallest such k.
Variants are made by rewiring the layer to its float inputs in the one QDQ graph (its dedicated
Q/DQ pairs then fall away), so no layer needs re-quantizing. At most ``max_float_layers``
(default: a quarter of the layers) may stay float — beyond that the model is no longer an INT8
model worth deploying — and missing the budget within that limit is a :class:`GateError`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.calibration.checker import FLOAT_NODES_KEY
from edge_resnet.calibration.graph import GraphIndex, resnet_layout
from edge_resnet.core import GateError, InputError

__all__ = ["MixedResult", "float_layers", "search_mixed"]

log = logging.getLogger(__name__)


@dataclass
class MixedResult:
    float_nodes: List[str]
    drop: float
    fp32_top1: float
    int8_top1: float
    plain_drop: float
    sensitivity: Dict[str, float] = field(default_factory=dict)
    evaluated: List[Tuple[int, float]] = field(default_factory=list)
    images: int = 0


def float_layers(qdq_model: "object", convs: Sequence[str]) -> "object":
    """Copy of ``qdq_model`` with the Conv/Add nodes ``convs`` fed by their float inputs."""
    import onnx

    from edge_resnet.calibration.qdq import record_artifact, set_metadata

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)  # type: ignore[arg-type]
    index = GraphIndex(model)
    nodes = {n.name: n for n in model.graph.node}
    for name in convs:
        node = nodes.get(name)
        if node is None or node.op_type not in ("Conv", "Add"):
            raise InputError(f"{name!r} is not a Conv or Add node of this model")
        for position in (0, 1):
            dq = index.producer.get(node.input[position])
            if dq is None or dq.op_type != "DequantizeLinear":  # type: ignore[attr-defined]
                continue
            q = index.producer.get(dq.input[0])  # type: ignore[attr-defined]
            if q is not None and q.op_type == "QuantizeLinear":  # type: ignore[attr-defined]
                node.input[position] = q.input[0]  # type: ignore[attr-defined]
    _drop_dead(model)
    previous: List[str] = []
    for prop in model.metadata_props:
        if prop.key == FLOAT_NODES_KEY:
            import json
            previous = json.loads(prop.value)
    set_metadata(model, {FLOAT_NODES_KEY: sorted(set(previous) | set(convs))})
    record_artifact(model, qdq_model, float_nodes=tuple(sorted(set(previous) | set(convs))))
    return model


def _drop_dead(model: "object") -> None:
    """Remove nodes (and initializers) whose outputs nobody reads."""
    graph = model.graph  # type: ignore[attr-defined]
    while True:
        used = {o.name for o in graph.output}
        for node in graph.node:
            used.update(node.input)
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def model_logits(model: "object", batches: Sequence[np.ndarray], threads: int = 0,
                 limit: Optional[int] = None) -> np.ndarray:
    """Logits of an in-memory ONNX model on preprocessed batches, through the ONNX Runtime
    backend with Q/DQ run as written (``exact_qdq``): the arithmetic TensorRT's INT8 kernels
    reproduce, so the numbers measure the quantization, not this CPU's INT8 kernels (what
    ``edge-resnet eval --exact-qdq`` runs too)."""
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.evaluation.comparator import run_backend

    with OnnxRuntimeBackend(model, threads=threads, exact_qdq=True) as backend:
        return run_backend(backend, batches, limit)


class _Runner:
    """The held-out batches and thread count every search step runs on."""

    def __init__(self, batches: Sequence[np.ndarray], threads: int) -> None:
        self.batches = list(batches)
        self.threads = threads

    def logits(self, model: "object", limit: Optional[int] = None) -> np.ndarray:
        return model_logits(model, self.batches, self.threads, limit)


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    from edge_resnet.evaluation.metrics import topk_accuracy

    return 100.0 * topk_accuracy(logits, labels, 1)


def _sensitivity(runner: _Runner, qdq: "object", layers: Sequence[str], ref: np.ndarray,
                 limit: int, progress: bool) -> Dict[str, float]:
    """Layer -> mean KL to FP32 of the model in which only that layer is quantized."""
    from tqdm import tqdm

    from edge_resnet.evaluation.metrics import kl_divergence

    scores: Dict[str, float] = {}
    for layer in tqdm(layers, desc="layer sensitivity", file=sys.stderr,
                      disable=not progress or None):
        alone = float_layers(qdq, [other for other in layers if other != layer])
        scores[layer] = float(kl_divergence(ref[:limit], runner.logits(alone, limit)).mean())
    return scores


def search_mixed(fp32: "object", qdq: "object", batches: Sequence[np.ndarray],
                 labels: np.ndarray, max_drop: float, *, sensitivity_images: int = 64,
                 max_float_layers: Optional[int] = None, threads: int = 0,
                 progress: bool = True) -> Tuple["object", MixedResult]:
    """Smallest set of most-sensitive Convs to keep float so the top-1 drop <= ``max_drop``."""
    if not max_drop >= 0:
        raise InputError(f"max_drop must be >= 0 points, got {max_drop}")
    runner = _Runner(batches, threads)
    ref = runner.logits(fp32)
    fp32_top1 = _top1(ref, labels)
    int8_top1 = _top1(runner.logits(qdq), labels)
    result = MixedResult([], fp32_top1 - int8_top1, fp32_top1, int8_top1,
                         fp32_top1 - int8_top1, images=len(labels))
    if result.plain_drop <= max_drop:
        return qdq, result
    layout = resnet_layout(qdq)
    convs = layout.convs + layout.residual_adds
    limit = max_float_layers if max_float_layers is not None else max(1, len(convs) // 4)
    result.sensitivity = _sensitivity(runner, qdq, convs, ref, sensitivity_images, progress)
    ranked = sorted(convs, key=lambda c: -result.sensitivity[c])[:limit]

    def drop_for(k: int) -> Tuple["object", float]:
        model = float_layers(qdq, ranked[:k])
        drop = fp32_top1 - _top1(runner.logits(model), labels)
        result.evaluated.append((k, drop))
        log.info("%d layer(s) float: top-1 drop %.2f points", k, drop)
        return model, drop

    k, low, best = 1, 0, None
    while True:
        model, drop = drop_for(k)
        if drop <= max_drop:
            best = (k, model, drop)
            break
        if k == len(ranked):
            raise GateError(
                f"top-1 drop {drop:.2f} points with the {k} most sensitive layers in float "
                f"(the limit) still exceeds the budget of {max_drop:g} points (plain INT8: "
                f"{result.plain_drop:.2f}); use a better calibration method or more images, a "
                "larger max_drop or a higher max_float_layers")
        low, k = k, min(2 * k, len(ranked))
    high = best[0]
    while high - low > 1:
        mid = (low + high) // 2
        model, drop = drop_for(mid)
        if drop <= max_drop:
            best, high = (mid, model, drop), mid
        else:
            low = mid
    result.float_nodes, result.drop = ranked[:best[0]], best[2]
    return best[1], result
