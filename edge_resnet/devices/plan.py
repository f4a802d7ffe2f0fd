"""Build plans: decide everything an engine build will do, without TensorRT.

``plan_build(profile, trt_version, artifacts, request)`` is pure: it reads no file and imports
no TensorRT, so a host can check what a device will build (``edge-resnet build --dry-run``) and
every rule is tested here. It refuses impossible asks with :class:`PlanError` saying what to do,
and never downgrades a request silently (no INT8-becomes-FP16 on a Nano).
Rules and sources: ``shared/docs/tensorrt-jetson-facts.md`` via :mod:`trt_versions`.
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge_resnet.core import InputError
from edge_resnet.devices import trt_versions as tv
from edge_resnet.devices.profiles import DeviceProfile

__all__ = ["BatchProfile", "BuildArtifacts", "BuildPlan", "BuildRequest", "OnnxArtifact",
           "PlanError", "plan_build"]

PRECISIONS = ("fp32", "fp16", "int8")
# Calibrator classes the builder instantiates to read a cache (its header must name one).
BUILD_CALIBRATORS = ("EntropyCalibration2", "MinMaxCalibration")


class PlanError(InputError):
    """The requested engine cannot be built for this device/TensorRT; the message says why and
    what to ask for instead."""


@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimization profile over the batch dimension (min <= opt <= max)."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """'8' -> 8:8:8, '1:8:16' -> min 1, opt 8, max 16."""
        parts = text.split(":")
        if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
            raise InputError(f"batch {text!r} must be N or MIN:OPT:MAX, e.g. 1:8:16")
        values = [int(p) for p in parts] * (3 if len(parts) == 1 else 1)
        profile = cls(*values)
        if not 1 <= profile.min <= profile.opt <= profile.max:
            raise InputError(f"batch {text!r} needs 1 <= MIN <= OPT <= MAX")
        return profile

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
class OnnxArtifact:
    """What the plan needs to know about one ONNX file (the CLI reads it; the plan does not).

    ``kind``: "fp32", "fp16" (float16 weights/tensors) or "qdq" (explicit INT8).
    ``input_dtype``: "float32", "float16" or "uint8" (preprocessing fused in-graph).
    ``batch``: the fixed batch dimension, or None when it is dynamic.
    """

    path: str
    kind: str
    opset: int
    input_dtype: str = "float32"
    input_name: str = "input"
    batch: Optional[int] = None
    sha256: str = ""


@dataclass(frozen=True)
class BuildArtifacts:
    models: Tuple[OnnxArtifact, ...]
    calibration_cache: Optional[str] = None
    cache_header: Optional[Tuple[int, str]] = None  # (version number, calibrator class)
    cache_sha256: str = ""

    def of_kind(self, kind: str) -> Optional[OnnxArtifact]:
        return next((m for m in self.models if m.kind == kind), None)


@dataclass(frozen=True)
class BuildRequest:
    precision: str
    out_dir: str
    batch: BatchProfile = BatchProfile(1, 1, 1)
    dla_core: Optional[int] = None
    max_gpu_fallback: Optional[int] = None
    workspace_mib: Optional[int] = None
    optimization_level: Optional[int] = None
    compute_capability: Optional[str] = None  # detected (needed for the x86 dGPU profile)


@dataclass
class BuildPlan:
    """Everything the builder executes; JSON for ``--dry-run`` and the engine's sidecar."""

    device: str
    compute_capability: Optional[str]
    trt_version: str
    precision: str
    input_model: str
    input_kind: str
    input_name: str
    input_dtype: str
    calibration_cache: Optional[str]
    calibrator: Optional[str]
    strongly_typed: bool
    flags: List[str]
    dla_core: Optional[int]
    max_gpu_fallback: Optional[int]
    batch: BatchProfile
    workspace_bytes: int
    timing_cache: str
    optimization_level: Optional[int]
    out_dir: str
    reasons: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["batch"] = {"min": self.batch.min, "opt": self.batch.opt, "max": self.batch.max}
        return data


def _check_version(profile: DeviceProfile, version: tv.TrtVersion) -> None:
    shipped = profile.tensorrt_versions()
    if profile.is_jetson and not profile.releases_for_tensorrt(version.major_minor):
        usable = [v for v in shipped if tv.parse_version(v) >= tv.MIN_BUILD_VERSION]
        hint = (f"build with one it ships: {', '.join(usable)}" if usable else
                "no JetPack for it ships TensorRT >= 8.5: run the ONNX model with the "
                "onnxruntime backend there")
        raise PlanError(f"TensorRT {version.major}.{version.minor} does not run on "
                        f"{profile.display_name} (its JetPacks ship {', '.join(shipped)}); "
                        f"engines must be built by the TensorRT that runs them: {hint}")
    if version < tv.MIN_BUILD_VERSION:
        raise PlanError(f"TensorRT {version} is older than 8.5, the oldest edge-resnet builds "
                        "for (named-tensor API); upgrade TensorRT (JetPack >= 5.1)")


def _check_hardware(profile: DeviceProfile, version: tv.TrtVersion,
                    request: BuildRequest) -> None:
    if request.precision == "int8" and not profile.fast_int8:
        raise PlanError(f"{profile.display_name} has no fast INT8 (compute capability "
                        f"{profile.compute_capability}); build with precision=fp16 instead")
    if request.precision == "fp16" and not profile.fast_fp16:
        raise PlanError(f"{profile.display_name} has no fast FP16; build with precision=fp32")
    if request.max_gpu_fallback is not None and request.dla_core is None:
        raise PlanError("max_gpu_fallback limits layers leaving the DLA: give dla_core too")
    if request.dla_core is None:
        return
    if profile.dla_cores == 0:
        raise PlanError(f"{profile.display_name} has no DLA; drop dla_core to build for the GPU")
    if not 0 <= request.dla_core < profile.dla_cores:
        raise PlanError(f"{profile.display_name} has {profile.dla_cores} DLA core(s): "
                        f"use dla_core=0{'' if profile.dla_cores == 1 else ' or dla_core=1'}")
    if not tv.dla_supported(version, profile.dla_cores):
        raise PlanError(f"TensorRT {version} has no DLA support on {profile.display_name} "
                        "(10.8–10.x and 11.0–11.3 dropped it; 11.4 restores it on AGX Orin): "
                        "drop dla_core, or build with TensorRT 8.5–10.7")
    if request.precision == "fp32":
        raise PlanError("the DLA runs FP16 and INT8 only: use precision=fp16 or int8 with "
                        "dla_core")
    if not request.batch.fixed:
        raise PlanError(f"the DLA needs a fixed batch size; got {request.batch}: "
                        f"use batch profile {request.batch.opt}")


def _choose_fp16(artifacts: BuildArtifacts, version: tv.TrtVersion, dla: bool,
                 reasons: List[str]) -> Tuple[OnnxArtifact, bool, List[str]]:
    fp16, fp32 = artifacts.of_kind("fp16"), artifacts.of_kind("fp32")
    if tv.strongly_typed_required(version):
        if fp16 is None:
            raise PlanError(f"TensorRT {version} takes precision from the ONNX (no FP16 flag): "
                            "give the FP16 ONNX (`edge-resnet calibrate MODEL --fp16 ...`)")
        reasons.append("TensorRT 11: strongly typed network from the FP16 ONNX")
        return fp16, True, []
    if fp16 is not None and tv.strongly_typed_available(version) and not dla:
        reasons.append("FP16 ONNX built as a strongly typed network (precision as exported)")
        return fp16, True, []
    chosen = fp32 or fp16
    if chosen is None:
        raise PlanError("FP16 needs the FP32 or FP16 ONNX of the model")
    reasons.append(f"{chosen.kind.upper()} ONNX with BuilderFlag.FP16 (TensorRT picks FP16 kernels)")
    return chosen, False, ["FP16"]


def _check_cache(artifacts: BuildArtifacts, version: tv.TrtVersion) -> str:
    if artifacts.calibration_cache is None:
        raise PlanError("INT8 needs the QDQ ONNX, or the FP32 ONNX with calibration_cache "
                        "(both written by `edge-resnet calibrate`)")
    header = artifacts.cache_header
    expected = tv.cache_version(version)
    if header is None:
        raise PlanError(f"{artifacts.calibration_cache} has no TRT-<version>-<calibrator> header")
    if header[1] not in BUILD_CALIBRATORS:
        raise PlanError(f"calibration cache header names {header[1]}; engines are built with "
                        f"{' or '.join(BUILD_CALIBRATORS)} caches: rewrite it with `edge-resnet "
                        "calibrate ... --cache-calibrator entropy2`")
    if header[0] != expected:
        raise PlanError(
            f"calibration cache header says TensorRT {header[0]}, the target runs {expected}: "
            "TensorRT silently ignores such a cache and calibrates on nothing; rewrite it with "
            f"`edge-resnet calibrate ... --trt-version {version}`")
    return header[1]


def _choose_int8(artifacts: BuildArtifacts, version: tv.TrtVersion, dla: bool,
                 reasons: List[str]) -> Tuple[OnnxArtifact, bool, List[str], Optional[str]]:
    qdq, fp32 = artifacts.of_kind("qdq"), artifacts.of_kind("fp32")
    if not tv.implicit_int8_supported(version):
        if artifacts.calibration_cache is not None:
            raise PlanError(f"TensorRT {version} removed implicit INT8: a calibration cache "
                            "cannot be used; drop calibration_cache and give the QDQ ONNX")
        if qdq is None:
            raise PlanError(f"TensorRT {version} builds INT8 only from Q/DQ: give the QDQ ONNX "
                            "that `edge-resnet calibrate` writes")
        reasons.append("TensorRT 11: strongly typed network, INT8 from the ONNX Q/DQ nodes")
        return qdq, True, [], None
    if dla and tv.dla_int8_needs_calibration_cache(version):
        if fp32 is None:
            raise PlanError(f"DLA INT8 on TensorRT {version} takes calibration scales, not Q/DQ: "
                            "give the FP32 ONNX and calibration_cache")
        calibrator = _check_cache(artifacts, version)
        reasons.append("DLA INT8 before TensorRT 11 reads per-tensor scales from the "
                       "calibration cache (FP32 ONNX + cache), not Q/DQ")
        return fp32, False, ["INT8", "FP16"], calibrator
    if qdq is not None:
        if artifacts.calibration_cache is not None:
            raise PlanError("the QDQ ONNX carries its scales: drop calibration_cache, or give "
                            "the FP32 ONNX to build from the cache")
        reasons.append("explicit INT8 from the QDQ ONNX; FP16 allowed for unquantized layers")
        return qdq, False, ["INT8", "FP16"], None
    if fp32 is None:
        raise PlanError("INT8 needs the QDQ ONNX, or the FP32 ONNX with calibration_cache")
    calibrator = _check_cache(artifacts, version)
    reasons.append("implicit INT8: FP32 ONNX + calibration cache (calibrator class from its header)")
    return fp32, False, ["INT8", "FP16"], calibrator


def _default_workspace(profile: DeviceProfile) -> int:
    """Jetson memory is shared with the CPU: a quarter of it, capped at 2 GiB."""
    if profile.memory_gb is None:
        return 2 << 30
    return min(2 << 30, (profile.memory_gb << 30) // 4)


def _check_artifact(model: OnnxArtifact, version: tv.TrtVersion, request: BuildRequest) -> None:
    if model.input_dtype == "uint8" and not tv.uint8_input_supported(version):
        raise PlanError(f"{model.path} takes uint8 frames (fused preprocessing); TensorRT "
                        f"{version} has no uint8 network input (8.5+): re-export it without fused "
                        "preprocessing")
    cap = tv.max_onnx_opset(version)
    if model.opset > cap:
        raise PlanError(f"{model.path} uses ONNX opset {model.opset}; TensorRT {version}'s "
                        f"parser reads up to {cap}: re-export with opset {cap}")
    if model.batch is not None and not (request.batch.min == request.batch.max == model.batch):
        raise PlanError(f"{model.path} has a fixed batch of {model.batch}: use batch profile "
                        f"{model.batch}, or export with a dynamic batch")


def plan_build(profile: DeviceProfile, trt_version: str, artifacts: BuildArtifacts,
               request: BuildRequest) -> BuildPlan:
    """Decide the build; raise :class:`PlanError` for anything that cannot work."""
    if request.precision not in PRECISIONS:
        raise PlanError(f"precision {request.precision!r}: choose {', '.join(PRECISIONS)}")
    if not artifacts.models:
        raise PlanError("no ONNX model given")
    kinds = [m.kind for m in artifacts.models]
    if len(set(kinds)) != len(kinds):
        raise PlanError(f"two models of the same kind given ({kinds}); give one per kind")
    version = tv.parse_version(trt_version)
    for model in artifacts.models:  # a fused-uint8 model is refused before a version mismatch
        if model.input_dtype == "uint8" and not tv.uint8_input_supported(version):
            _check_artifact(model, version, request)
    _check_hardware(profile, version, request)
    _check_version(profile, version)
    dla = request.dla_core is not None
    reasons: List[str] = []
    calibrator: Optional[str] = None
    flags: List[str] = []
    if request.precision == "fp32":
        fp32 = artifacts.of_kind("fp32")
        if fp32 is None:
            raise PlanError("FP32 needs the FP32 ONNX (`edge-resnet export`)")
        model, strongly = fp32, tv.strongly_typed_required(version)
        reasons.append("FP32 ONNX, no reduced-precision flags")
    elif request.precision == "fp16":
        model, strongly, flags = _choose_fp16(artifacts, version, dla, reasons)
    else:
        model, strongly, flags, calibrator = _choose_int8(artifacts, version, dla, reasons)
    _check_artifact(model, version, request)
    level = _optimization_level(request, version)
    if dla:
        flags = flags + ["GPU_FALLBACK"]
        reasons.append(f"DLA core {request.dla_core} with GPU fallback for layers it cannot run")
    compute = profile.compute_capability or request.compute_capability
    out = Path(request.out_dir)
    return BuildPlan(
        device=profile.name, compute_capability=compute, trt_version=str(version),
        precision=request.precision, input_model=model.path, input_kind=model.kind,
        input_name=model.input_name, input_dtype=model.input_dtype,
        calibration_cache=artifacts.calibration_cache if calibrator else None,
        calibrator=calibrator, strongly_typed=strongly, flags=flags, dla_core=request.dla_core,
        max_gpu_fallback=request.max_gpu_fallback, batch=request.batch,
        workspace_bytes=(request.workspace_mib << 20) if request.workspace_mib
        else _default_workspace(profile),
        timing_cache=str(out / f"timing-{profile.name}-trt{version}.cache"),
        optimization_level=level, out_dir=str(out), reasons=reasons)


def _optimization_level(request: BuildRequest, version: tv.TrtVersion) -> Optional[int]:
    level = request.optimization_level
    if level is not None and not 0 <= level <= 5:
        raise PlanError(f"builder optimization level {level}: use 0..5 (3 is TensorRT's default)")
    if not tv.builder_optimization_level_supported(version):
        if level is not None:
            raise PlanError(f"TensorRT {version} has no builder optimization level (8.6+): "
                            "drop optimization_level")
        return None
    return 3 if level is None else level
