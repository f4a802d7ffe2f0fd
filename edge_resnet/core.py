"""Shared types of every stage: the error hierarchy and the model spec.

Every stage (export, calibration, evaluation, backends, runtime, bundle) imports this module and
this module imports no stage, so the data that flows between stages has one definition. It runs
on the device too (Python 3.8, no torch), so it uses only the standard library.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = [
    "ARTIFACT_INFO_KEY",
    "ARTIFACT_INFO_VERSION",
    "ArtifactInfo",
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


# The provenance record of an artifact: one JSON value under this key in ONNX ``metadata_props``,
# and the ``artifact`` field of an engine's sidecar (engines have no metadata of their own).
ARTIFACT_INFO_KEY = "edge_resnet.artifact"
ARTIFACT_INFO_VERSION = 1
_PRECISIONS = ("fp32", "fp16", "int8")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class ArtifactInfo:
    """Where an artifact (ONNX model, engine) came from and what it is, in one versioned record.

    * ``spec``: the model spec true of this file; ``precision``: ``fp32``/``fp16``/``int8``.
    * ``source_sha256`` is the sha256 of what the artifact was made from and ``source_kind``
      says what that is: ``weights`` (the checkpoint/weights file an export read),
      ``onnx-graph`` (the parent ONNX graph's fingerprint, metadata excluded: what calibration
      read), ``onnx-file`` (the ONNX file an engine was built from). ``source`` is a
      human-readable origin (``torchvision:IMAGENET1K_V2``, a checkpoint path).
    * ``calibration_method`` and ``float_nodes`` (layers deliberately left in float) for INT8.
    * ``sdk_version`` of the edge-resnet that wrote it; ``created`` (UTC, ISO 8601).

    Readers refuse a record of a newer ``version`` than they know instead of misreading it.
    """

    spec: ModelSpec
    precision: str
    source_sha256: str = ""
    source_kind: str = ""
    source: str = ""
    sdk_version: str = ""
    calibration_method: Optional[str] = None
    float_nodes: Tuple[str, ...] = ()
    created: str = field(default_factory=_utc_now)
    version: int = ARTIFACT_INFO_VERSION

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise InputError(f"artifact precision must be one of {', '.join(_PRECISIONS)}, got "
                             f"{self.precision!r}")

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["spec"] = {key[len(_METADATA_PREFIX):]: json.loads(value)
                        for key, value in self.spec.to_metadata().items()}
        data["float_nodes"] = list(self.float_nodes)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_metadata(self) -> Dict[str, str]:
        """``{ARTIFACT_INFO_KEY: <JSON>}`` for ONNX ``metadata_props``."""
        return {ARTIFACT_INFO_KEY: self.to_json()}

    def with_changes(self, **changes: Any) -> "ArtifactInfo":
        """A copy with fields replaced and a new ``created`` time (a derived artifact)."""
        changes.setdefault("created", _utc_now())
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Any) -> "ArtifactInfo":
        """Inverse of :meth:`to_dict`; a newer or malformed record is a :class:`ModelError`."""
        if not isinstance(data, dict):
            raise ModelError(f"artifact record is not a JSON object: {str(data)[:60]!r}")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelError(f"artifact record has no valid version ({version!r}); re-create the "
                             "artifact with edge-resnet")
        if version > ARTIFACT_INFO_VERSION:
            raise ModelError(f"artifact record version {version} is newer than this edge-resnet "
                             f"reads (version {ARTIFACT_INFO_VERSION}): upgrade edge-resnet")
        spec = data.get("spec")
        if not isinstance(spec, dict):
            raise ModelError("artifact record has no model spec")
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["spec"] = ModelSpec.from_metadata(
            {_METADATA_PREFIX + key: json.dumps(value) for key, value in spec.items()})
        fields["float_nodes"] = tuple(fields.get("float_nodes") or ())
        try:
            return cls(**fields)
        except (TypeError, InputError) as exc:
            raise ModelError(f"artifact record is invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ArtifactInfo":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"artifact record is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "Optional[ArtifactInfo]":
        """The record in ``metadata`` (ONNX ``metadata_props``), or None when it has none."""
        text = metadata.get(ARTIFACT_INFO_KEY)
        return None if text is None else cls.from_json(text)

    @classmethod
    def derived(cls, metadata: Mapping[str, str], **changes: Any) -> "ArtifactInfo":
        """The record of an artifact made from the model whose ``metadata`` is given: its own
        record with ``changes``, or (a model exported before records existed) one built from
        its spec and precision."""
        parent = cls.from_metadata(metadata)
        if parent is not None:
            return parent.with_changes(**changes)
        raw = metadata.get(_METADATA_PREFIX + "precision", '"fp32"')
        try:
            precision = json.loads(raw)
        except ValueError:
            precision = "fp32"
        base: Dict[str, Any] = {"spec": ModelSpec.from_metadata(metadata),
                                "precision": precision if precision in _PRECISIONS else "fp32"}
        base.update(changes)
        return cls(**base)
