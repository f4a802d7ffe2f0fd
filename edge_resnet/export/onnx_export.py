"""PyTorch ResNet50 -> ONNX for TensorRT, OpenVINO and ONNX Runtime.

The exported graph is what every later stage trusts, so it is built to be boring:

* BatchNorm is folded into the convolutions in PyTorch before export (and the graph is checked
  to contain no ``BatchNormalization``); constants are folded by the exporter.
* Tensor names are stable and readable (``/layer1/layer1.0/conv1/Conv_output_0``): TensorRT
  calibration caches and the calibration stage key on them. The TorchScript exporter gives such
  module-path names; the dynamo exporter names tensors after FX nodes (``getitem_3``,
  ``relu_1``) that change with tracing details, so it is not used.
* Input ``input``, outputs ``logits`` (and ``features``: the pooled 2048-d vector, or for a
  model with an embedding head, :mod:`edge_resnet.export.embedding`, the raw embedding, not
  L2-normalised: galleries and ``gallery eval`` normalise); the batch dimension is dynamic.
  The head's BatchNorms are folded into its FC, so it exports as one Gemm.
* The :class:`ModelSpec` travels in ``metadata_props`` so a device needs nothing but the file.
* Optionally, preprocessing is fused: the graph takes uint8 NHWC frames (BGR as OpenCV
  delivers, or RGB) and casts, normalises and transposes in-graph. The channel swap for BGR
  costs nothing at run time: it is folded into the first convolution's weights.

The file is written atomically; a failed export leaves nothing behind.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import onnx
import torch
from torch import nn

from edge_resnet import __version__
from edge_resnet.core import ArtifactInfo, InputError, ModelError, ModelSpec
from edge_resnet.devices.trt_versions import JETPACK5_TENSORRT, max_onnx_opset
from edge_resnet.export.embedding import BODY_PARTS, ResNetBody
from edge_resnet.io_utils import atomic_path, ensure_parent

__all__ = ["ExportResult", "MIN_OPSET", "MAX_OPSET", "FEATURES_NAME", "export_onnx",
           "fold_batchnorm", "tensor_names"]

log = logging.getLogger(__name__)

MIN_OPSET = 17
# The TorchScript exporter's newest opset (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
MAX_OPSET = 20
FEATURES_NAME = "features"
_RESNET_PARTS = (*BODY_PARTS, "fc")
_EXPORTER = f"torch.onnx TorchScript exporter, torch {torch.__version__}"

Shape = List[Union[int, str]]


@dataclass
class ExportResult:
    """What was written: the file, the spec of the exported graph and its interface."""

    path: Path
    spec: ModelSpec
    opset: int
    input_name: str
    input_shape: Shape
    output_names: Tuple[str, ...]
    output_shapes: Dict[str, Shape]
    file_size: int
    seconds: float
    exporter: str = _EXPORTER
    op_counts: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "opset": self.opset, "input_name": self.input_name,
                "input_shape": self.input_shape, "output_names": list(self.output_names),
                "output_shapes": self.output_shapes, "file_size": self.file_size,
                "seconds": round(self.seconds, 3), "exporter": self.exporter,
                "op_counts": self.op_counts, "spec": self.spec.to_metadata()}


# --------------------------------------------------------------------------- torch side

def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every Conv2d->BatchNorm2d pair fused into the conv.

    Pairs are ``convN``/``bnN`` siblings (ResNet blocks and stem) and consecutive entries of an
    ``nn.Sequential`` (ResNet's ``downsample``). The fused BN becomes ``nn.Identity``, which
    exports to nothing. Raises :class:`ModelError` when a BatchNorm is left unfused.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        children = dict(module.named_children())
        pairs: List[Tuple[str, str]] = []
        if isinstance(module, nn.Sequential):
            names = list(children)
            pairs = [(a, b) for a, b in zip(names, names[1:])]
        else:
            pairs = [(n, "bn" + n[len("conv"):]) for n in children if n.startswith("conv")]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ModelError(f"BatchNorm layers {left[:5]} do not follow a convolution and cannot be "
                         "folded; only torchvision-style ResNets are supported")
    return folded


class _Preprocess(nn.Module):
    """uint8 NHWC frames -> normalised float NCHW, the numerics of preprocessing.normalize.

    The constants are computed exactly as ``edge_resnet.preprocessing.normalize`` computes them
    (float32 ``mean*255`` and ``1/(std*255)``), in the frames' channel order.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, spec: ModelSpec, input_color_order: str) -> None:
        super().__init__()
        mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
        if input_color_order == "BGR":
            mean, inv_std = mean[::-1].copy(), inv_std[::-1].copy()
        self.register_buffer("shift", torch.from_numpy(mean.astype(np.float32)).view(1, 1, 1, 3))
        self.register_buffer("scale", torch.from_numpy(inv_std.astype(np.float32)).view(1, 1, 1, 3))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.to(torch.float32) - self.shift) * self.scale
        return x.permute(0, 3, 1, 2)


class _ExportNet(ResNetBody):
    """A torchvision ResNet with optional in-graph preprocessing and a features output.

    The ResNet's submodules keep their attribute names, so tensor names are the same as when
    exporting the bare torchvision model, whatever the options. ``embedding`` (the folded
    head of an embedding model, else None) sits between pooling and ``fc``; ``features`` is
    its output then.
    """

    fc: nn.Module

    def __init__(self, resnet: nn.Module, preprocess: Optional[nn.Module],
                 with_features: bool, embedding: Optional[nn.Module] = None) -> None:
        super().__init__(resnet)
        self.preprocess = preprocess
        self.fc = getattr(resnet, "fc")
        self.embedding = embedding
        self.with_features = with_features

    def forward(self, x: torch.Tensor) -> Any:
        if self.preprocess is not None:
            x = self.preprocess(x)
        features = self.pooled(x)
        if self.embedding is not None:
            features = self.embedding(features)
        logits = self.fc(features)
        return (logits, features) if self.with_features else logits


def _check_model(model: nn.Module, spec: ModelSpec) -> None:
    missing = [name for name in _RESNET_PARTS if not hasattr(model, name)]
    if missing:
        raise ModelError(f"expected a torchvision ResNet (missing {missing}); load models with "
                         "edge_resnet.export.models.load_model")
    fc = getattr(model, "fc")
    if not isinstance(fc, nn.Linear) or fc.out_features != spec.num_classes:
        got = getattr(fc, "out_features", type(fc).__name__)
        raise ModelError(f"the model's fc has {got} outputs but the spec has {spec.num_classes} "
                         "labels; give one label per class")


def _build_net(model: nn.Module, spec: ModelSpec, fuse: bool, order: str,
               with_features: bool) -> nn.Module:
    from edge_resnet.export.embedding import EmbeddingHead

    folded = fold_batchnorm(model)
    head = getattr(folded, "embedding", None)
    embedding = head.as_linear() if isinstance(head, EmbeddingHead) else None
    preprocess = None
    if fuse:
        preprocess = _Preprocess(spec, order)
        if order == "BGR":  # the network wants RGB: swap the first conv's input channels
            conv1 = getattr(folded, "conv1")
            with torch.no_grad():
                conv1.weight.copy_(conv1.weight.flip(1))
    return _ExportNet(folded, preprocess, with_features, embedding).eval()


def _torch_export(net: nn.Module, dummy: torch.Tensor, opset: int, names: List[str],
                  dynamic_batch: bool) -> bytes:
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in names} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is chosen on purpose (stable tensor names); its deprecation
        # notices are not actionable for users.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(net, (dummy,), buffer,  # type: ignore[arg-type]
                              dynamo=False, opset_version=opset, input_names=names[:1],
                              output_names=names[1:],
                              dynamic_axes=axes, do_constant_folding=True,
                              training=torch.onnx.TrainingMode.EVAL)
        except Exception as exc:  # torch raises many untyped errors while tracing/exporting
            raise ModelError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    return buffer.getvalue()


# --------------------------------------------------------------------------- onnx side

def _drop_initializer_identities(graph: onnx.GraphProto) -> None:
    """Remove ``Identity`` nodes the exporter adds for de-duplicated initializers.

    Consumers read the initializer directly, so the graph holds only real compute nodes.
    """
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: Dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)


def _finish_graph(raw: bytes, metadata: Dict[str, str]) -> onnx.ModelProto:
    """Clean, annotate, check and shape-infer the exported graph."""
    model = onnx.load_from_string(raw)
    _drop_initializer_identities(model.graph)
    bn = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ModelError(f"BatchNormalization nodes survived export: {bn[:5]}")
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "edge-resnet", __version__
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"the exported graph is invalid: {exc}") from exc
    return model


def _dims(value_info: onnx.ValueInfoProto) -> Shape:
    return [d.dim_param if d.dim_param else int(d.dim_value)
            for d in value_info.type.tensor_type.shape.dim]


def tensor_names(model: onnx.ModelProto) -> List[str]:
    """Every node output name in graph order: what calibration caches and ranges key on."""
    return [name for node in model.graph.node for name in node.output]


# --------------------------------------------------------------------------- public API

def _validate(spec: ModelSpec, opset: int, order: str, out_path: Path) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"opset {opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} "
                         f"(TensorRT {JETPACK5_TENSORRT.major}.{JETPACK5_TENSORRT.minor} on "
                         f"JetPack 5 reads up to {max_onnx_opset(JETPACK5_TENSORRT)})")
    if order not in ("BGR", "RGB"):
        raise InputError(f"input colour order must be BGR or RGB, got {order!r}")
    if spec.fused_preprocessing:
        raise InputError("the spec given to export_onnx describes the PyTorch model (float NCHW "
                         "input); pass fuse_preprocessing=True instead of a fused spec")
    if spec.color_order != "RGB" or spec.layout != "NCHW":
        raise InputError("only models taking RGB NCHW input (torchvision's) can be exported")
    if out_path.suffix.lower() != ".onnx":
        raise InputError(f"output path {out_path} should end in .onnx")
    try:  # fail before the (slow) export when the destination cannot be written
        ensure_parent(out_path)
    except OSError as exc:
        raise InputError(f"cannot write {out_path}: {exc.strerror or exc}; choose a writable "
                         "output path") from exc


def _graph_spec(spec: ModelSpec, fuse: bool, order: str, with_features: bool,
                weights_sha256: str) -> ModelSpec:
    """The spec of the exported file: its input as the graph takes it (uint8 NHWC frames in
    ``order`` when preprocessing is fused, float RGB NCHW otherwise) and its outputs."""
    return spec.with_changes(
        fused_preprocessing=fuse,
        color_order=order if fuse else "RGB",
        layout="NHWC" if fuse else "NCHW",
        features_name=FEATURES_NAME if with_features else None,
        weights_sha256=weights_sha256 or spec.weights_sha256)


def export_onnx(model: nn.Module, spec: ModelSpec, out_path: "str | Path", *, opset: int = 17,
                fuse_preprocessing: bool = False, input_color_order: str = "BGR",
                with_features: bool = False, dynamic_batch: bool = True,
                weights_sha256: str = "", source: str = "") -> ExportResult:
    """Export a torchvision ResNet to one self-describing ONNX file at ``out_path``.

    ``spec`` describes the PyTorch model (its labels, resolution, mean/std). The returned
    result carries the spec of the exported graph, which is also written into the file: its
    input's dtype (fused preprocessing), colour order and layout, and its output names.
    ``input_color_order`` only matters with ``fuse_preprocessing``.
    """
    started = time.perf_counter()
    out = Path(out_path)
    _validate(spec, opset, input_color_order, out)
    _check_model(model, spec)
    graph_spec = _graph_spec(spec, fuse_preprocessing, input_color_order, with_features,
                             weights_sha256)
    net = _build_net(model, spec, fuse_preprocessing, input_color_order, with_features)
    res = spec.resolution
    dummy = (torch.zeros((2, res, res, 3), dtype=torch.uint8) if fuse_preprocessing
             else torch.zeros((2, 3, res, res), dtype=torch.float32))
    if not dynamic_batch:
        dummy = dummy[:1]
    names = [spec.input_name, spec.output_name] + ([FEATURES_NAME] if with_features else [])
    metadata = dict(graph_spec.to_metadata())
    metadata.update({"edge_resnet.precision": json.dumps("fp32"),
                     "edge_resnet.sdk_version": json.dumps(__version__),
                     "edge_resnet.source": json.dumps(source),
                     "edge_resnet.exporter": json.dumps(_EXPORTER)})
    metadata.update(ArtifactInfo(
        spec=graph_spec, precision="fp32", source=source, sdk_version=__version__,
        source_sha256=graph_spec.weights_sha256,
        source_kind="weights" if graph_spec.weights_sha256 else "").to_metadata())
    proto = _finish_graph(_torch_export(net, dummy, opset, names, dynamic_batch), metadata)
    try:
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf refuses > 2 GiB
        raise ModelError(f"the graph is too large for a single ONNX file: {exc}") from exc
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}; choose a writable "
                         "output path") from exc
    ops: Dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    result = ExportResult(
        path=out, spec=graph_spec, opset=opset, input_name=proto.graph.input[0].name,
        input_shape=_dims(proto.graph.input[0]),
        output_names=tuple(o.name for o in proto.graph.output),
        output_shapes={o.name: _dims(o) for o in proto.graph.output},
        file_size=len(data), seconds=time.perf_counter() - started, op_counts=ops)
    log.debug("exported %s (%.1f MB, opset %d) in %.1fs", out, len(data) / 1e6, opset,
             result.seconds)
    return result
