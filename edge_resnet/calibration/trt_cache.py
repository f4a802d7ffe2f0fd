"""TensorRT calibration cache (legacy implicit INT8, TensorRT 8.x / 10.x) — write and read.

Format (what TensorRT's calibrators and ONNX Runtime's TensorRT provider read)::

    TRT-8601-EntropyCalibration2
    input: 3c010a14
    /layer1/layer1.0/conv1/Conv_output_0: 3d2a8f12

Line 1 names the TensorRT version (8.x: ``major*1000 + minor*100 + patch``, e.g. 8.5.2 -> 8502;
10.x: ``major*10000 + minor*100 + patch``, e.g. 10.3.0 -> 100300) and the calibrator *class that
will read the file* — not the range method that produced the scales. TensorRT skips a cache
whose header names another calibrator or another version (NVIDIA/TensorRT#1378) and then
calibrates on whatever data it has: ``trtexec --calib`` uses ``IInt8EntropyCalibrator2``, so a
cache labelled ``MinMaxCalibration`` is silently ignored there. The scales can come from any
range method, so every cache is written for ``EntropyCalibration2`` unless the caller names its
own calibrator class (``calibrator="minmax"`` for ``IInt8MinMaxCalibrator``, ``"legacy"`` for
``IInt8LegacyCalibrator``). Every other line is an ONNX tensor name and the big-endian hex of the
float32 scale (dynamic range = scale * 127). TensorRT 11 removed implicit INT8: use the QDQ model
there.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

from edge_resnet.calibration.options import CALIBRATORS
from edge_resnet.core import CalibrationError, InputError
from edge_resnet.devices.trt_versions import JETPACK5_TENSORRT, cache_version
from edge_resnet.io_utils import atomic_write_text

__all__ = ["CalibrationCache", "CALIBRATORS", "DEFAULT_CALIBRATOR", "calibrator_header",
           "parse_trt_version", "read_cache", "write_cache"]

DEFAULT_CALIBRATOR = "entropy2"
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")


def parse_trt_version(version: Union[int, str]) -> int:
    """'8.5.2' -> 8502, '10.3' -> 100300, 8601 -> 8601; TensorRT 11+ is refused.

    The rule lives in :func:`edge_resnet.devices.trt_versions.cache_version` (the one place
    that knows TensorRT versions); this name stays for the calibration stage's callers."""
    return cache_version(version)


@dataclass
class CalibrationCache:
    version: int
    algorithm: str
    scales: Dict[str, float]


def _hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def calibrator_header(calibrator: str) -> str:
    """Header word for a calibrator class name ('entropy2' -> 'EntropyCalibration2')."""
    word = CALIBRATORS.get(calibrator)
    if word is None:
        raise InputError(f"unknown cache calibrator {calibrator!r}: choose the TensorRT "
                         f"calibrator class that will read the cache, one of "
                         f"{', '.join(CALIBRATORS)} (trtexec --calib reads entropy2)")
    return word


def write_cache(path: "str | Path", ranges: Mapping[str, float], *,
                trt_version: Union[int, str] = str(JETPACK5_TENSORRT), names: Sequence[str] = (),
                calibrator: str = DEFAULT_CALIBRATOR) -> Path:
    """Write ``ranges`` (tensor -> amax) as a cache for ``calibrator``; ``names`` fixes the line
    order."""
    version = parse_trt_version(trt_version)
    algorithm = calibrator_header(calibrator)
    order = list(names) or list(ranges)
    lines = [f"TRT-{version}-{algorithm}"]
    for name in order:
        amax = float(ranges[name])
        if not amax > 0.0 or amax != amax:
            raise CalibrationError(f"tensor {name!r} has an invalid range {amax}")
        if ":" in name and name.endswith(" "):
            raise CalibrationError(f"tensor name {name!r} cannot be written to a cache")
        lines.append(f"{name}: {_hex(amax / 127.0)}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_cache(path: "str | Path") -> CalibrationCache:
    """Parse a cache file back (scales, not amax)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration cache {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    match = _HEADER.match(lines[0].strip()) if lines else None
    if match is None:
        raise CalibrationError(f"{path}: first line is not a TRT-<version>-<algorithm> header")
    scales: Dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        item = _LINE.match(line.rstrip())
        if item is None:
            raise CalibrationError(f"{path}:{number}: not '<tensor>: <8 hex digits>': {line!r}")
        scales[item.group(1)] = struct.unpack(">f", bytes.fromhex(item.group(2)))[0]
    return CalibrationCache(version=int(match.group(1)), algorithm=match.group(2), scales=scales)
