"""What each TensorRT generation accepts: the one place that knows version rules.

Export, calibration and the build plan ask this module (uint8 network input, implicit INT8,
builder precision flags, strongly typed networks, DLA, ONNX opset, calibration-cache header
numbers) instead of hard-coding 8502 or an opset cap. Sources, all in
``shared/docs/tensorrt-jetson-facts.md``: TensorRT migration guides 8.x→10.x and 10.x→11.x,
"Working with DLA" (10.7 last 10.x with DLA; 11.4.1 restores it on AGX Orin), the bundled
parser's opset support, NVIDIA/TensorRT#1378 (cache header version must match).
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from edge_resnet.core import InputError

__all__ = ["JETPACK5_TENSORRT", "MIN_BUILD_VERSION", "TrtVersion", "builder_optimization_level_supported",
           "builder_precision_flags", "cache_version", "dla_supported", "implicit_int8_supported",
           "max_onnx_opset", "parse_version", "strongly_typed_available",
           "strongly_typed_required", "uint8_input_supported"]

_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?$")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version (build number dropped: it does not change what a plan may use)."""

    major: int
    minor: int = 0
    patch: int = 0

    @property
    def major_minor(self) -> Tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# The TensorRT of JetPack 5.1.x (Python 3.8 devices), the oldest generation the SDK targets by
# default: calibration caches are written for it and exports stay within its parser's opset.
JETPACK5_TENSORRT = TrtVersion(8, 5, 2)

# The oldest TensorRT the builder and backend drive: the named-tensor API (num_io_tensors,
# set_tensor_address, execute_async_v3) arrived in 8.5 (facts doc, "Python API").
MIN_BUILD_VERSION = TrtVersion(8, 5, 0)


def parse_version(version: Union[str, int, TrtVersion]) -> TrtVersion:
    """'8.5.2.2' / '10.3' / '11.4.1' -> TrtVersion; cache numbers (8502, 100300) too."""
    if isinstance(version, TrtVersion):
        return version
    text = str(version).strip()
    if text.isdigit() and len(text) >= 4:
        number = int(text)
        if number >= 100000:
            return TrtVersion(number // 10000, number // 100 % 100, number % 100)
        return TrtVersion(number // 1000, number // 100 % 10, number % 100)
    match = _VERSION.match(text)
    if match is None:
        raise InputError(f"TensorRT version {version!r} is not like 8.5.2, 10.3 or 11.4.1")
    major, minor, patch = (int(g) if g else 0 for g in match.groups()[:3])
    if major < 5:
        raise InputError(f"TensorRT version {version!r} is not a TensorRT release")
    return TrtVersion(major, minor, patch)


def uint8_input_supported(version: Union[str, TrtVersion]) -> bool:
    """uint8 network inputs (fused preprocessing) exist from TensorRT 8.5."""
    return parse_version(version) >= TrtVersion(8, 5)


def implicit_int8_supported(version: Union[str, TrtVersion]) -> bool:
    """Calibrators, calibration caches and ``BuilderFlag.INT8``: removed in TensorRT 11.0."""
    return parse_version(version).major < 11


def builder_precision_flags(version: Union[str, TrtVersion]) -> bool:
    """``BuilderFlag.FP16/INT8``: removed in 11.0 (networks are strongly typed there)."""
    return parse_version(version).major < 11


def strongly_typed_available(version: Union[str, TrtVersion]) -> bool:
    """``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists in 10.x; always on in 11."""
    return parse_version(version).major >= 10


def strongly_typed_required(version: Union[str, TrtVersion]) -> bool:
    return parse_version(version).major >= 11


def builder_optimization_level_supported(version: Union[str, TrtVersion]) -> bool:
    """``IBuilderConfig.builder_optimization_level`` (0..5, default 3) arrived in 8.6."""
    return parse_version(version) >= TrtVersion(8, 6)


def dla_supported(version: Union[str, TrtVersion], dla_cores: int) -> bool:
    """DLA needs DLA cores on the module *and* a TensorRT that drives them: every 8.x, 10.0–10.7
    (10.7 was the last 10.x with DLA), none in 10.8+ or 11.0–11.3, again from 11.4."""
    if dla_cores <= 0:
        return False
    v = parse_version(version)
    if v.major == 8:
        return True
    if v.major == 10:
        return v.minor <= 7
    return v >= TrtVersion(11, 4)


def dla_int8_needs_calibration_cache(version: Union[str, TrtVersion]) -> bool:
    """DLA INT8 on JetPack 5/6 (TensorRT < 11) takes per-tensor scales from calibration, not
    ONNX Q/DQ (NVIDIA's qdq-translator and MLPerf ResNet50 builder use a cache there)."""
    return implicit_int8_supported(version)


def max_onnx_opset(version: Union[str, TrtVersion]) -> int:
    """Newest ONNX opset the bundled parser imports: 8.2 → 13, 8.5/8.6 → 17, 10.x → 20,
    11.x → 25 (10.3's parser is the documented 10.x point; later 10.x are not assumed newer)."""
    v = parse_version(version)
    if v < TrtVersion(8, 5):
        return 13
    if v.major < 10:
        return 17
    if v.major == 10:
        return 20
    return 25


def cache_version(trt_version: Union[str, int, TrtVersion]) -> int:
    """The number in a calibration cache header (``TRT-<n>-EntropyCalibration2``).

    8.x: major*1000 + minor*100 + patch (8.5.2 → 8502, 8.6.1 → 8601); 10.x:
    major*10000 + minor*100 + patch (10.3.0 → 100300). TensorRT skips a cache whose number
    differs from its own (NVIDIA/TensorRT#1378), so the number must be the target's.
    """
    v = parse_version(trt_version)
    if v.major >= 11:
        raise InputError(
            f"TensorRT version {v} has no calibration cache: implicit INT8 was removed in "
            "TensorRT 11; build INT8 from the QDQ ONNX that `edge-resnet calibrate` writes")
    if v.major == 8:
        return v.major * 1000 + v.minor * 100 + v.patch
    if v.major == 10:
        return v.major * 10000 + v.minor * 100 + v.patch
    raise InputError(f"TensorRT version {v}: calibration caches are written for TensorRT 8.x "
                     "and 10.x only; give the version the device runs, e.g. 8.5.2 or 10.3.0")


def optional_version(version: Optional[str]) -> Optional[TrtVersion]:
    return None if version is None else parse_version(version)
