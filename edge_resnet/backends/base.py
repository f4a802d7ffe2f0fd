"""The Backend protocol and the registry the pipeline, evaluator and benchmark choose from.

Every backend (ONNX Runtime, OpenVINO, TensorRT) loads a model file, infers a batch that
:func:`edge_resnet.preprocessing.preprocess_batch` produced for its spec, and returns logits (and
pooled features when the model has them). Callers never know which backend they drive.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, TypeVar

import numpy as np

from edge_resnet.core import BackendError, InputError, ModelSpec

try:  # Protocol is typing-only on 3.8+, kept importable for older type checkers.
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore

__all__ = ["Backend", "BackendBase", "InferenceOutput", "backend_names", "load_backend",
           "register_backend"]


@dataclass
class InferenceOutput:
    """What one batch inference returns: logits (N x classes), optional features (N x 2048)."""

    logits: np.ndarray
    features: Optional[np.ndarray] = None


@dataclass
class BackendInfo:
    """Metadata a backend reports: used in reports, bench tables and bundle manifests."""

    name: str
    model_path: str
    precision: str
    device: str
    details: Dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A loaded model ready to infer. Use as a context manager or call :meth:`close`."""

    spec: ModelSpec
    info: BackendInfo

    def infer(self, batch: np.ndarray) -> InferenceOutput:
        """Run one batch (as ``preprocess_batch`` made it) and return its outputs."""
        ...

    def close(self) -> None:
        """Release the session/engine; further ``infer`` calls raise."""
        ...

    def __enter__(self) -> "Backend":
        ...

    def __exit__(self, *exc: object) -> None:
        ...


_Self = TypeVar("_Self", bound="BackendBase")


class BackendBase:
    """Lifecycle and input checks shared by the concrete backends.

    Subclasses set ``spec``, ``info``, ``_input_dtype`` (numpy scalar type), ``_input_shape``
    (ints for fixed dimensions, anything else for dynamic ones) and ``_input_label``, and
    implement ``_release``.
    """

    spec: ModelSpec
    info: BackendInfo
    _input_dtype: Any = np.float32
    _input_shape: Sequence[Any] = ()
    _input_label: str = "input"
    _closed: bool = False

    @property
    def input_dtype(self) -> "np.dtype[Any]":
        return np.dtype(self._input_dtype)

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Refuse batches that would run but mean something else (raw pixels into a float graph,
        a wrong layout); cast float32 to a float16 input."""
        if self._closed:
            raise BackendError("backend is closed")
        if batch.ndim != 4:
            raise InputError(f"expected a 4-D batch, got shape {batch.shape}")
        if batch.dtype != self._input_dtype:
            if self._input_dtype == np.uint8:
                raise InputError(
                    "this model has preprocessing fused in-graph and takes uint8 NHWC frames; "
                    f"got {batch.dtype}")
            if not np.issubdtype(batch.dtype, np.floating):
                raise InputError(
                    f"this model takes normalised float {self.spec.layout} input; got "
                    f"{batch.dtype} (use edge_resnet.preprocessing.preprocess_batch)")
            batch = batch.astype(self._input_dtype)
        expected = list(self._input_shape)
        wrong = [i for i, (d, n) in enumerate(zip(expected, batch.shape))
                 if isinstance(d, int) and d != n]
        if wrong:
            hint = (f"; the model has a fixed batch size: use batch size {expected[0]}"
                    if wrong == [0] else "")
            raise InputError(f"batch shape {tuple(batch.shape)} does not fit the model input "
                             f"{self._input_label!r} of shape {expected}{hint}")
        return np.ascontiguousarray(batch)

    def _release(self) -> None:
        """Free the session/engine (subclasses)."""

    def close(self) -> None:
        self._closed = True
        self._release()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BackendFactory = Callable[..., Backend]

# name -> "module:function"; modules import lazily so that a missing optional runtime only
# matters when that backend is asked for.
_REGISTRY: Dict[str, str] = {
    "onnxruntime": "edge_resnet.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edge_resnet.backends.openvino:OpenVinoBackend",
    "pytorch": "edge_resnet.backends.pytorch:PyTorchBackend",
    "tensorrt": "edge_resnet.backends.tensorrt:TensorRTBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register ``"module:callable"`` under ``name`` (timm-style registry)."""
    _REGISTRY[name] = target


def backend_names() -> list:
    return sorted(_REGISTRY)


def load_backend(name: str, model_path: "str | Path", **options: Any) -> Backend:
    """Create backend ``name`` for ``model_path``; unknown names are an :class:`InputError`.

    ``auto`` picks the backend from the file and this machine
    (:func:`edge_resnet.backends.reference.choose_backend`) and records why in
    ``info.details["backend_choice"]``."""
    if name == "auto":
        from edge_resnet.backends.reference import ModelRef, open_model

        return open_model(ModelRef(str(model_path), "auto", options))
    target = _REGISTRY.get(name)
    if target is None:
        raise InputError(f"unknown backend {name!r}; choose one of: "
                         f"{', '.join(['auto'] + backend_names())}")
    module_name, _, attr = target.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module_name), attr)
    backend = factory(model_path, **options)
    backend.info.details.setdefault("backend_choice", f"asked for ({name})")
    return backend
