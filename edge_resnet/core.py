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

    Every field is true of the file it is stored in, so a reader can build the input from the
    metadata alone (``preprocess_batch`` does exactly that):

    * ``resolution`` is the square side the network sees. ``resize`` is the shorter side an
      image is resized to before the centre crop (torchvision's ``Resize(resize)`` +
      ``CenterCrop``); ``None`` means a plain resize to ``resolution`` x ``resolution``.
    * ``color_order`` and ``layout`` describe the graph's *input* tensor: its channel order
      (``RGB``/``BGR``) and where the channels are (``NCHW``/``NHWC``).
    * ``fused_preprocessing`` marks a graph that takes raw uint8 pixels and normalises in-graph
      (the exporter's fused graphs take uint8 NHWC frames in ``color_order``); otherwise the
      input is float, already normalised on the host.
    * ``mean``/``std`` are the normalisation on the 0..1 scale, always in RGB order as
      torchvision gives them, whether the host or the graph applies them.
    * ``label_ids`` are the dataset's IDs of the classes (WordNet IDs such as ``n01440764`` for
      ImageNet), one per label in class-index order, or ``None`` when the classes have none.
    """

    labels: Tuple[str, ...]
    resolution: int = 224
    resize: Optional[int] = 256
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    layout: str = "NCHW"
    fused_preprocessing: bool = False
    input_name: str = "input"
    output_name: str = "logits"
    features_name: Optional[str] = None
    arch: str = "resnet50"
    weights_sha256: str = ""
    label_ids: Optional[Tuple[str, ...]] = None
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
        if self.color_order not in ("RGB", "BGR"):
            raise InputError(f"color_order must be RGB or BGR, got {self.color_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        self._check_label_ids()

    def _check_label_ids(self) -> None:
        ids = self.label_ids
        if ids is None:
            return
        if len(ids) != len(self.labels):
            raise InputError(f"{len(ids)} label IDs for {len(self.labels)} labels; give one ID "
                             "per label, in class-index order")
        if len(set(ids)) != len(ids):
            raise InputError("label IDs must be unique; duplicates: " + ", ".join(
                sorted({x for x in ids if ids.count(x) > 1})[:5]))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def input_shape(self, batch: int = 1) -> Tuple[int, int, int, int]:
        """Shape of an input batch of ``batch`` images, as ``layout`` and ``resolution`` say."""
        res = self.resolution
        return (batch, 3, res, res) if self.layout == "NCHW" else (batch, res, res, 3)

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
        known = set(cls.__dataclass_fields__) | {_LEGACY_INPUT_ORDER}
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
        _upgrade_legacy(kwargs)
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except InputError as exc:
            raise ModelError(f"the model's edge-resnet metadata is invalid: {exc}") from exc


# Files written by edge-resnet before the spec described the graph's input kept the network's
# order in ``color_order``/``layout`` (always RGB/NCHW) and the fused graph's frame order here.
_LEGACY_INPUT_ORDER = "input_color_order"


def _upgrade_legacy(kwargs: Dict[str, object]) -> None:
    """Read metadata of older exports as what their graphs really take.

    A legacy fused graph takes uint8 NHWC frames in ``input_color_order``; a legacy unfused
    graph took RGB NCHW, which the other fields already say.
    """
    order = kwargs.pop(_LEGACY_INPUT_ORDER, None)
    if order is not None and kwargs.get("fused_preprocessing"):
        kwargs["color_order"] = order
        kwargs["layout"] = "NHWC"
