"""OpenVINO backend: the fast CPU backend for x86/ARM edge boxes (INT8 QDQ graphs run as INT8).

Same protocol and constructor shape as the ONNX Runtime backend; reads the edge-resnet ONNX
directly (no IR conversion step), compiles for CPU with the LATENCY hint and
``INFERENCE_NUM_THREADS`` threads. OpenVINO would silently run FP32 graphs in bfloat16 on CPUs with
AVX512-BF16/AMX; this backend pins ``INFERENCE_PRECISION_HINT`` to f32 unless asked otherwise,
so an FP32 model runs as FP32 (and an INT8 QDQ model's non-quantized layers stay FP32). Device side: Python 3.8, no torch; openvino is an extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge_resnet.backends.base import BackendBase, BackendInfo, BatchProfile, InferenceOutput
from edge_resnet.backends.onnxruntime import onnx_precision
from edge_resnet.backends.options import OpenVinoOptions, merge_settings
from edge_resnet.core import BackendError, DependencyError, ModelError, ModelSpec

__all__ = ["OpenVinoBackend"]


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise DependencyError(
            "the openvino backend needs OpenVINO: `pip install edge-resnet[openvino]`") from exc
    return openvino


def _onnx_metadata(path: Path) -> "tuple[Dict[str, str], List[str]]":
    """metadata_props and operator types of an ONNX file (weights not loaded)."""
    try:
        import onnx
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    return meta, sorted({n.op_type for n in model.graph.node})


class OpenVinoBackend(BackendBase):
    """Runs an edge-resnet ONNX with OpenVINO on ``device`` (CPU by default).

    ``options`` (:class:`OpenVinoOptions`, or its fields as keywords): ``threads`` sets
    INFERENCE_NUM_THREADS (0 lets OpenVINO choose); ``spec`` overrides the spec read from the
    model's metadata. ``submit`` runs the batch at once (the LATENCY hint gives one stream
    that already uses every inference thread) and returns a finished handle.
    """

    def __init__(self, model_path: "str | Path", options: Optional[OpenVinoOptions] = None,
                 spec: Optional[ModelSpec] = None, **settings: Any) -> None:
        self.options = opts = merge_settings(OpenVinoOptions, options, settings)
        threads, device, hint = opts.threads, opts.device, opts.hint
        ov = _import_openvino()
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        meta, ops = _onnx_metadata(path)
        self.spec = spec if spec is not None else ModelSpec.from_metadata(meta)
        config: Dict[str, Any] = {"PERFORMANCE_HINT": hint,
                                  "INFERENCE_PRECISION_HINT": opts.inference_precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            self._compiled = core.compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"OpenVINO cannot load {path} on {device}: {exc}") from exc
        self._output_names = self._names(self._compiled.outputs)
        if self.spec.output_name not in self._output_names:
            raise ModelError(f"{path}: output {self.spec.output_name!r} not in graph outputs "
                             f"{list(self._output_names)}")
        element = self._compiled.inputs[0].get_element_type()
        in_type = element.get_type_name()          # "u8", "f32", "f16"
        self._input_dtype = np.dtype(element.to_dtype()).type
        port = self._compiled.inputs[0]
        self._input_shape = [d.get_length() if d.is_static else None
                             for d in port.get_partial_shape()]
        self._input_label = port.get_any_name()
        first = self._input_shape[0] if self._input_shape else None
        if isinstance(first, int):
            self._batch_profile = BatchProfile(first, first, first, "fixed batch dimension")
        self._request = self._compiled.create_infer_request()
        precision = meta.get("edge_resnet.precision", "").strip('"') or onnx_precision(
            [in_type.replace("f16", "float16")], ops)
        self.info = BackendInfo(
            name="openvino", model_path=str(path), precision=precision, device=device,
            details={"threads": threads, "hint": hint, "input_type": in_type,
                     "inference_precision": self._compiled.get_property(
                         "INFERENCE_PRECISION_HINT").get_type_name(),
                     "openvino": ov.__version__})

    @staticmethod
    def _names(ports: Any) -> Dict[str, int]:
        names: Dict[str, int] = {}
        for i, port in enumerate(ports):
            for name in port.get_names():
                names[name] = i
        return names

    def _run(self, batch: np.ndarray) -> InferenceOutput:
        try:
            # zero-copy in and out; outputs are copied below before the next infer reuses them
            result = self._request.infer({0: batch}, share_inputs=True,
                                         share_outputs=True)
        except Exception as exc:
            raise BackendError(f"OpenVINO inference failed: {exc}") from exc
        logits = np.array(result[self._output_names[self.spec.output_name]], dtype=np.float32)
        features = None
        if self.spec.features_name and self.spec.features_name in self._output_names:
            features = np.array(result[self._output_names[self.spec.features_name]],
                                dtype=np.float32)
        return InferenceOutput(logits=logits, features=features)

    def _release(self) -> None:
        self._request = None
        self._compiled = None
