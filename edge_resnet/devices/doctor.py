"""``edge-resnet doctor``: what this machine is and which runtimes are usable, each with a fix.

Every check is a small function returning a :class:`Check`; the imports and files it reads go
through :class:`DoctorProbes` so tests can present a Jetson with TensorRT, or a bare host.
Nothing here raises for a missing component: absence is the finding.
Device side: Python 3.8; heavy modules (cv2, openvino, tensorrt) only inside the checks.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from edge_resnet.devices.detect import Detection, Probes, detect
from edge_resnet.devices.profiles import get_profile
from edge_resnet.devices.trt_versions import dla_supported

__all__ = ["Check", "DoctorProbes", "cpu_int8_features", "run_checks"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _import(name: str) -> Optional[Any]:
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken binary raising OSError/RuntimeError
        return None


@dataclass
class DoctorProbes:
    detect: Probes = field(default_factory=Probes)
    import_module: Callable[[str], Optional[Any]] = _import


def cpu_int8_features(cpuinfo: str) -> List[str]:
    """INT8 dot-product instructions named in /proc/cpuinfo (x86 VNNI/AMX, Arm dotprod/i8mm)."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    wanted = ["avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"]
    return [f for f in wanted if f in flags]


def _machine(found: Detection) -> Check:
    if found.profile is None:
        return Check("machine", False, f"{found.machine}: {found.profile_reason}",
                     "build with --device NAME (`edge-resnet devices` lists them)")
    profile = get_profile(found.profile)
    parts = [profile.display_name]
    if found.l4t:
        parts.append(f"L4T {found.l4t}, JetPack {found.jetpack or 'unknown'}")
    if found.gpus:
        parts.append(", ".join(f"{g.name} (sm {g.compute_capability})" for g in found.gpus))
    return Check("machine", True, f"{'; '.join(parts)} [{found.profile_reason}]")


def _tensorrt(found: Detection) -> Check:
    if found.tensorrt:
        return Check("tensorrt", True, f"TensorRT {found.tensorrt}")
    fix = ("sudo apt install python3-libnvinfer (JetPack's TensorRT; a venv needs "
           "--system-site-packages)" if found.is_jetson else
           "pip install tensorrt (x86 with an NVIDIA driver); `build --dry-run` works without it")
    return Check("tensorrt", False, "not installed", fix)


def _cuda(found: Detection) -> Check:
    if found.cuda:
        return Check("cuda", True, f"CUDA toolkit {found.cuda}")
    fix = ("sudo apt install nvidia-jetpack (CUDA comes with JetPack)" if found.is_jetson
           else "install the NVIDIA driver and CUDA toolkit (only needed for TensorRT)")
    return Check("cuda", False, "no CUDA toolkit found", fix)


def _cuda_python(probes: DoctorProbes) -> Check:
    bindings = probes.import_module("cuda.bindings") or probes.import_module("cuda")
    version = getattr(bindings, "__version__", None) if bindings is not None else None
    pycuda = probes.import_module("pycuda")
    extra = f"; pycuda {getattr(pycuda, 'VERSION_TEXT', 'present')}" if pycuda else ""
    if bindings is None:
        return Check("cuda-python", False, "cuda-python not installed" + extra,
                     "pip install 'cuda-python<13' on JetPack 6 (CUDA 12), 'cuda-python<12' on "
                     "JetPack 5 (CUDA 11.4): the tensorrt backend's buffers use it")
    return Check("cuda-python", True, f"cuda-python {version or '(version unknown)'}{extra}")


def _opencv(probes: DoctorProbes) -> Check:
    cv2 = probes.import_module("cv2")
    if cv2 is None:
        return Check("opencv", False, "OpenCV not installed",
                     "on a Jetson: sudo apt install python3-opencv (built with GStreamer); "
                     "elsewhere: pip install 'edge-resnet[video]'")
    info = cv2.getBuildInformation() if hasattr(cv2, "getBuildInformation") else ""
    gst = any("GStreamer" in line and "YES" in line for line in info.splitlines())
    detail = f"OpenCV {cv2.__version__}, GStreamer {'yes' if gst else 'no'}"
    if gst:
        return Check("opencv", True, detail)
    return Check("opencv", False, detail, "CSI cameras (csi://) and RTSP via GStreamer need an "
                 "OpenCV built with GStreamer: on a Jetson use JetPack's python3-opencv, not pip's")


def _dla(found: Detection) -> Check:
    if found.profile is None:
        return Check("dla", False, "unknown device", "give --device to plan DLA builds")
    profile = get_profile(found.profile)
    if profile.dla_cores == 0:
        return Check("dla", True, f"{profile.display_name} has no DLA (GPU only)")
    if found.tensorrt and not dla_supported(found.tensorrt, profile.dla_cores):
        return Check("dla", False, f"{profile.dla_cores} DLA core(s), but TensorRT "
                     f"{found.tensorrt} has no DLA support", "use TensorRT 8.5–10.7 or 11.4+")
    return Check("dla", True, f"{profile.dla_cores} DLA core(s)")


def _onnxruntime(probes: DoctorProbes) -> Check:
    ort = probes.import_module("onnxruntime")
    if ort is None:
        return Check("onnxruntime", False, "not installed", "pip install onnxruntime")
    return Check("onnxruntime", True,
                 f"{ort.__version__}: {', '.join(ort.get_available_providers())}")


def _openvino(probes: DoctorProbes) -> Check:
    ov = probes.import_module("openvino")
    if ov is None:
        return Check("openvino", False, "not installed (optional: x86 CPUs)",
                     "pip install 'edge-resnet[openvino]'")
    version = getattr(ov, "__version__", None) or getattr(ov, "get_version", lambda: "?")()
    return Check("openvino", True, str(version))


def _cpu_int8(probes: DoctorProbes) -> Check:
    features = cpu_int8_features(probes.detect.read_text("/proc/cpuinfo") or "")
    if features:
        return Check("cpu-int8", True, "INT8 dot-product instructions: " + ", ".join(features))
    return Check("cpu-int8", False, "no VNNI/AMX (x86) or dotprod/i8mm (Arm) instructions",
                 "INT8 on this CPU is slower than FP32 and less exact: run FP32 here, or INT8 "
                 "on a GPU/DLA")


def run_checks(probes: Optional[DoctorProbes] = None) -> List[Check]:
    probes = probes or DoctorProbes()
    found = detect(probes.detect)
    return [_machine(found), _tensorrt(found), _cuda(found), _cuda_python(probes),
            _opencv(probes), _dla(found), _onnxruntime(probes), _openvino(probes),
            _cpu_int8(probes)]
