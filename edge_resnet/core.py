"""Shared types of every stage: the error hierarchy and the model spec.

Every stage (export, calibration, evaluation, backends, runtime, bundle) imports this module and
this module imports no stage, so the data that flows between stages has one definition. It runs
on the device too (Python 3.8, no torch), so it uses only the standard library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Mapping, Optional, Tuple

__all__ = [
    "BackendError",
    "CalibrationError",
    "DataError",
    "DependencyError",
    "EdgeResnetError",
    "GateError",
    "InputError",
    "ModelError",
    "ModelSpec",
    "ParityError",
    "SourceError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

# Keys under which the spec is stored in ONNX ``metadata_props`` (and bundle manifests).
_METADATA_PREFIX = "edge_resnet."


class EdgeResnetError(Exception):
    """Base of every error the SDK raises on purpose; the CLI prints its message as one line."""


class InputError(EdgeResnetError):
    """A path, option or argument given by the user is unusable."""


class DependencyError(EdgeResnetError):
    """An optional dependency (torch, openvino, tensorrt, ...) is missing or unusable."""


class ModelError(EdgeResnetError):
    """A model file, checkpoint or graph is missing, corrupt or not what the stage expects."""


class DataError(EdgeResnetError):
    """A dataset or image folder cannot be used (empty, no readable image, wrong layout)."""


class ParityError(EdgeResnetError):
    """Two implementations of the same model disagree beyond the tolerance."""


class GateError(EdgeResnetError):
    """An accuracy gate (``--max-drop``) was breached."""


class CalibrationError(EdgeResnetError):
    """Calibration statistics, ranges or a quantized graph are invalid."""


class BackendError(EdgeResnetError):
    """An inference backend failed to load a model or run it."""


class SourceError(EdgeResnetError):
    """A capture source (camera, stream, file) cannot be opened or read."""


@dataclass(frozen=True)
class ModelSpec:
    """What every stage must know about a classifier to feed it and read its output.

    ``resolution`` is the square side the network sees. ``resize`` is the shorter side an image
    is resized to before the centre crop (torchvision's ``Resize(resize)`` + ``CenterCrop``);
    ``None`` means a plain resize to ``resolution`` x ``resolution``. ``mean``/``std`` are on the
    0..1 scale, in RGB order, as torchvision gives them.

    ``fused_preprocessing`` marks a graph whose input is uint8 NHWC frames at ``resolution`` in
    ``input_color_order``; cast, channel order, normalisation and transpose happen in-graph.
    """

    labels: Tuple[str, ...]
    resolution: int = 224
    resize: Optional[int] = 256
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    layout: str = "NCHW"
    fused_preprocessing: bool = False
    input_color_order: str = "RGB"
    input_name: str = "input"
    output_name: str = "logits"
    features_name: Optional[str] = None
    arch: str = "resnet50"
    weights_sha256: str = ""
    extra: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            raise InputError("a model spec needs at least one class label")
        if len(set(self.labels)) != len(self.labels):
            raise InputError("class labels must be unique; duplicates: " + ", ".join(
                sorted({x for x in self.labels if self.labels.count(x) > 1})))
        if self.resolution < 8:
            raise InputError(f"resolution {self.resolution} is too small (minimum 8)")
        if self.resize is not None and self.resize < self.resolution:
            raise InputError(
                f"resize {self.resize} is smaller than the crop {self.resolution}; "
                "use a resize >= resolution or no resize (plain resize)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError("mean and std need three values each and std must be positive")
        for name in ("color_order", "input_color_order"):
            if getattr(self, name) not in ("RGB", "BGR"):
                raise InputError(f"{name} must be RGB or BGR, got {getattr(self, name)!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout must be NCHW or NHWC, got {self.layout!r}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def with_changes(self, **changes: object) -> "ModelSpec":
        """Return a copy with fields replaced (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_metadata(self) -> Dict[str, str]:
        """Flatten to string key/values for ONNX ``metadata_props`` or a manifest."""
        data = asdict(self)
        out: Dict[str, str] = {}
        for key, value in data.items():
            out[_METADATA_PREFIX + key] = json.dumps(value)
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "ModelSpec":
        """Inverse of :meth:`to_metadata`; raises :class:`ModelError` when the keys are absent."""
        values = {
            key[len(_METADATA_PREFIX):]: value
            for key, value in metadata.items()
            if key.startswith(_METADATA_PREFIX)
        }
        if "labels" not in values:
            raise ModelError(
                "the model carries no edge-resnet metadata (labels, resolution, mean/std); "
                "export it with `edge-resnet export` or pass the spec explicitly")
        known = set(cls.__dataclass_fields__)
        kwargs: Dict[str, object] = {}
        for key, raw in values.items():
            if key not in known:
                continue
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise ModelError(f"model metadata {key!r} is not valid JSON: {exc}") from exc
            if isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)  # type: ignore[arg-type]
