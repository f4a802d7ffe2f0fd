"""Every calibration option, grouped by the stage that uses it, in one light module.

Standard library only: the CLI builds its parser and its defaults from here without importing
numpy, ONNX or a range method. Each group validates itself when it is made; the top level checks
only what spans groups. Errors speak the library's names (``num_images``); the CLI maps them to
its flags. One way in: ``calibrate(model, data, out, CalibrationOptions(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

from edge_resnet.core import InputError
from edge_resnet.devices.trt_versions import JETPACK5_TENSORRT

__all__ = ["CALIBRATORS", "METHODS", "AccuracyOptions", "CacheOptions", "CalibrationOptions",
           "Fp16Options", "MethodOptions", "ReaderOptions"]

# The built-in range methods (the CLI's choices; the registry in methods.py may hold more).
METHODS: Tuple[str, ...] = ("entropy", "minmax", "mse", "percentile")
# TensorRT calibrator classes -> the header word their caches carry (see trt_cache).
CALIBRATORS = {"entropy2": "EntropyCalibration2",   # IInt8EntropyCalibrator2 (trtexec --calib)
               "minmax": "MinMaxCalibration",       # IInt8MinMaxCalibrator
               "legacy": "LegacyCalibration"}       # IInt8LegacyCalibrator


@dataclass(frozen=True)
class ReaderOptions:
    """How many calibration images, in which order, in what batches; shared by every reader.
    ``kind`` forces a reader (folder, video, list) instead of guessing from the path."""

    num_images: Optional[int] = None
    seed: int = 0
    batch_size: int = 16
    frame_stride: int = 1
    kind: Optional[str] = None

    def __post_init__(self) -> None:
        if self.num_images is not None and self.num_images <= 0:
            raise InputError(f"num_images must be a positive number, got {self.num_images}")
        if self.batch_size <= 0:
            raise InputError(f"batch_size must be positive, got {self.batch_size}")
        if self.frame_stride <= 0:
            raise InputError(f"frame_stride must be positive, got {self.frame_stride}")


@dataclass(frozen=True)
class MethodOptions:
    """Knobs of the histogram range methods (defaults are pytorch-quantization's)."""

    percentile: float = 99.99
    start_bin: int = 128
    stride: int = 1
    num_bits: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise InputError(f"percentile={self.percentile}: must be in (0, 100]")
        if self.start_bin < 1 or self.stride < 1:
            raise InputError("start_bin and stride must be positive")
        if not 2 <= self.num_bits <= 16:
            raise InputError(f"num_bits must be in [2, 16], got {self.num_bits}")


@dataclass(frozen=True)
class CacheOptions:
    """The legacy TensorRT calibration cache: for which TensorRT, read by which calibrator."""

    trt_version: Union[int, str] = field(default_factory=lambda: str(JETPACK5_TENSORRT))
    calibrator: str = "entropy2"

    def __post_init__(self) -> None:
        from edge_resnet.calibration.trt_cache import calibrator_header, parse_trt_version

        calibrator_header(self.calibrator)
        parse_trt_version(self.trt_version)


@dataclass(frozen=True)
class Fp16Options:
    """The FP16 model: float32 IO (Casts at the edges) unless ``keep_io_types`` is off."""

    keep_io_types: bool = True


@dataclass(frozen=True)
class AccuracyOptions:
    """Top-1 of every written model on a labeled held-out folder and, with ``max_drop``, the
    accuracy-aware mixed-precision search against that budget (top-1 points)."""

    data: Path
    num_images: Optional[int] = None
    max_drop: Optional[float] = None
    sensitivity_images: int = 64
    max_float_layers: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        if not self.data.is_dir():
            raise InputError(f"evaluation folder {self.data} does not exist")
        if self.max_drop is not None and not self.max_drop >= 0:
            raise InputError(f"max_drop must be >= 0 points, got {self.max_drop}")
        if self.num_images is not None and self.num_images <= 0:
            raise InputError(f"evaluation num_images must be positive, got {self.num_images}")
        if self.sensitivity_images <= 0:
            raise InputError(f"sensitivity_images must be positive, got {self.sensitivity_images}")
        if self.max_float_layers is not None and self.max_float_layers < 1:
            raise InputError(f"max_float_layers must be >= 1, got {self.max_float_layers}")


@dataclass(frozen=True)
class CalibrationOptions:
    """Everything ``calibrate`` can be told. ``methods``: ``("auto",)`` scores every range
    method on held-out calibration images and writes the best; ``("all",)`` writes every
    method; or name methods. ``fp16``/``accuracy`` None: that stage does not run."""

    methods: Tuple[str, ...] = ("auto",)
    reader: ReaderOptions = field(default_factory=lambda: ReaderOptions(num_images=512))
    ranges: MethodOptions = field(default_factory=MethodOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    fp16: Optional[Fp16Options] = None
    accuracy: Optional[AccuracyOptions] = None
    quantize_fc: bool = False
    num_bins: int = 2048
    stats_path: Optional[Path] = None
    threads: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        from edge_resnet.calibration.methods import method_names

        methods = tuple(self.methods)
        unknown = [m for m in methods if m not in ("auto", "all", *method_names())]
        if unknown or not methods:
            raise InputError(f"unknown calibration method(s) {unknown}; choose from "
                             f"{', '.join(method_names())}, all or auto")
        if len(methods) > 1 and ("auto" in methods or "all" in methods):
            raise InputError("auto and all stand alone; do not combine them with other methods")
        object.__setattr__(self, "methods", methods)
        if self.threads < 0:
            raise InputError(f"threads={self.threads}: must be >= 0")

    @property
    def scored_methods(self) -> Tuple[str, ...]:
        """Methods whose INT8 model is built and scored on the held-out images."""
        from edge_resnet.calibration.methods import method_names

        return tuple(method_names()) if self.methods[0] in ("auto", "all") else self.methods

    def written_methods(self, chosen: str) -> Tuple[str, ...]:
        """Methods whose artifacts are written once ``chosen`` is known."""
        if self.methods[0] == "auto":
            return (chosen,)
        return self.scored_methods
