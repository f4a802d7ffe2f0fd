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
from typing import Any, Callable, Dict, Optional

import numpy as np

from edge_resnet.core import InputError, ModelSpec

try:  # Protocol is typing-only on 3.8+, kept importable for older type checkers.
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore

__all__ = ["Backend", "InferenceOutput", "backend_names", "load_backend", "register_backend"]


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


BackendFactory = Callable[..., Backend]

# name -> "module:function"; modules import lazily so that a missing optional runtime only
# matters when that backend is asked for.
_REGISTRY: Dict[str, str] = {
    "onnxruntime": "edge_resnet.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edge_resnet.backends.openvino:OpenVinoBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register ``"module:callable"`` under ``name`` (timm-style registry)."""
    _REGISTRY[name] = target


def backend_names() -> list:
    return sorted(_REGISTRY)


def load_backend(name: str, model_path: "str | Path", **options: Any) -> Backend:
    """Create backend ``name`` for ``model_path``; unknown names are an :class:`InputError`."""
    target = _REGISTRY.get(name)
    if target is None:
        raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")
    module_name, _, attr = target.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module_name), attr)
    return factory(model_path, **options)
