"""ONNX Runtime backend: the reference CPU backend that runs everywhere (and CUDA where present).

Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_resnet.backends.base import BackendBase, BackendInfo, BatchProfile, InferenceOutput
from edge_resnet.backends.options import OnnxRuntimeOptions, merge_settings
from edge_resnet.core import (BackendError, DependencyError, EdgeResnetError, InputError,
                              ModelError, ModelSpec)

__all__ = ["ModelSource", "OnnxRuntimeBackend", "onnx_precision", "ort_session"]

# A model file, or a model in memory (serialized bytes or an onnx.ModelProto): calibration
# compares graphs it has just built without writing them to disk.
ModelSource = Union[str, Path, bytes, Any]
IN_MEMORY = "<in-memory model>"


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise DependencyError(
            "onnxruntime is not installed; `pip install onnxruntime` (or onnxruntime-gpu)") from exc
    return onnxruntime


def onnx_precision(input_types: Sequence[str], op_types: Sequence[str]) -> str:
    """Name the precision of a graph from its input element types and operator types."""
    if "QuantizeLinear" in op_types or "DequantizeLinear" in op_types:
        return "int8"
    if any("float16" in t for t in input_types):
        return "fp16"
    return "fp32"


def _op_types(model: ModelSource) -> List[str]:
    """Operator types of the graph (a file is read without external weights: cheap)."""
    import onnx

    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise ModelError(f"{model} is not a readable ONNX model: {exc}") from exc
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    return sorted({n.op_type for n in model.graph.node})


def _has_qdq(model: ModelSource) -> bool:
    return bool({"QuantizeLinear", "DequantizeLinear"} & set(_op_types(model)))


def ort_session(model: ModelSource, *, threads: int = 0, exact_qdq: bool = False,
                optimize: bool = True, providers: Optional[List[str]] = None) -> Any:
    """The one way the SDK opens an ONNX Runtime session (backend, calibration statistics,
    comparisons): quiet logs, ``threads`` intra-op threads, one inter-op thread; with
    ``exact_qdq`` a QDQ graph runs as written (see :class:`OnnxRuntimeBackend`); without
    ``optimize`` no graph rewrite at all (every tensor keeps the name TensorRT sees)."""
    ort = _import_ort()
    if threads < 0:
        raise InputError(f"threads must be >= 0, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not optimize or (exact_qdq and _has_qdq(model)):
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, Path):
        model = str(model)
    elif not isinstance(model, (str, bytes)):
        model = model.SerializeToString()
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])


class OnnxRuntimeBackend(BackendBase):
    """Runs an exported (or calibrated) edge-resnet ONNX with ONNX Runtime.

    ``options`` (:class:`OnnxRuntimeOptions`, or its fields as keywords): ``threads`` sets
    intra-op threads (0 lets ONNX Runtime choose). ``spec`` overrides the spec read from the
    model's metadata, for ONNX files exported elsewhere.

    ``exact_qdq``: run a QDQ (INT8) graph as written — QuantizeLinear/DequantizeLinear in float
    around float operators — instead of letting ONNX Runtime fuse it into its CPU INT8 kernels.
    That is the arithmetic TensorRT's INT8 kernels reproduce (int8 products, exact int32 sums),
    so it measures the quantization itself; ONNX Runtime's x86 INT8 kernels widen products to
    16 bits on CPUs without VNNI and can saturate there, which costs accuracy TensorRT does not
    lose. Slower (graph optimizations are off); graphs without Q/DQ ignore it.

    ``submit`` runs the batch at once (``session.run``) and returns a finished handle:
    ONNX Runtime's CPU kernels already use every intra-op thread, so a second batch in flight
    would only compete with the first for the same cores.
    """

    def __init__(self, model_path: ModelSource, options: Optional[OnnxRuntimeOptions] = None,
                 spec: Optional[ModelSpec] = None, **settings: Any) -> None:
        self.options = opts = merge_settings(OnnxRuntimeOptions, options, settings)
        ort = _import_ort()
        in_memory = not isinstance(model_path, (str, Path))
        path = Path(IN_MEMORY) if in_memory else Path(str(model_path))
        if not in_memory and not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        exact = opts.exact_qdq and _has_qdq(model_path)
        try:
            self._session = ort_session(model_path, threads=opts.threads, exact_qdq=exact,
                                        providers=list(opts.providers or ()) or None)
        except EdgeResnetError:
            raise
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        self.spec = spec if spec is not None else ModelSpec.from_metadata(meta)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input, found {[i.name for i in inputs]}")
        self._input = inputs[0]
        self._input_shape = list(self._input.shape)
        self._input_label = self._input.name
        first = self._input_shape[0] if self._input_shape else None
        if isinstance(first, int) and first > 0:
            self._batch_profile = BatchProfile(first, first, first, "fixed batch dimension")
        self._output_names = [o.name for o in self._session.get_outputs()]
        if self.spec.output_name not in self._output_names:
            raise ModelError(
                f"{path}: output {self.spec.output_name!r} not in graph outputs {self._output_names}")
        self._input_dtype = np.float16 if "float16" in self._input.type else (
            np.uint8 if "uint8" in self._input.type else np.float32)
        self.info = BackendInfo(
            name="onnxruntime", model_path=str(path),
            precision=(meta.get("edge_resnet.precision", "").strip('"')
                       or onnx_precision([self._input.type], _op_types(model_path))),
            device=",".join(self._session.get_providers()),
            details={"threads": opts.threads, "input_type": self._input.type,
                     "onnxruntime": ort.__version__,
                     "qdq_arithmetic": "exact (Q/DQ in float)" if exact else "onnxruntime kernels"})

    def _run(self, batch: np.ndarray) -> InferenceOutput:
        try:
            outputs = self._session.run(self._output_names, {self._input.name: batch})
        except Exception as exc:
            raise BackendError(f"ONNX Runtime inference failed: {exc}") from exc
        by_name: Dict[str, np.ndarray] = dict(zip(self._output_names, outputs))
        logits = by_name[self.spec.output_name].astype(np.float32, copy=False)
        features = by_name.get(self.spec.features_name or "")
        if features is not None:
            features = features.astype(np.float32, copy=False)
        return InferenceOutput(logits=logits, features=features)

    def _release(self) -> None:
        self._session = None
