"""What machine is this: Jetson module + L4T/JetPack, or an x86 host with NVIDIA GPUs.

Reads the same sources NVIDIA's tools and jetson-stats read: ``/proc/device-tree/model`` and
``/proc/device-tree/compatible`` (module part number, e.g. ``p3701-0005``),
``/etc/nv_tegra_release`` or the ``nvidia-l4t-core`` package version (L4T), ``/proc/meminfo``
(tells 8 GB from 16 GB modules that share a device-tree model), ``tensorrt.__version__``, the
CUDA toolkit's version file or ``nvcc``, and ``nvidia-smi`` on x86. Every file read and command
goes through :class:`Probes`, so tests feed strings captured on real devices.
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import importlib
import json
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from edge_resnet.devices.profiles import DeviceProfile, JetPackRelease, all_profiles

__all__ = ["Detection", "GpuInfo", "Probes", "detect", "jetpack_for_l4t", "parse_l4t_release",
           "parse_nvidia_smi"]

_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")
_PART = re.compile(r"p\d{4}-\d{4}")
_NVCC = re.compile(r"release (\d+\.\d+), V([\d.]+)")
_CUDA_TXT = re.compile(r"CUDA Version\s+([\d.]+)")
_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version",
              "--format=csv,noheader,nounits"]
_DPKG_L4T = ["dpkg-query", "--showformat=${Version}", "--show", "nvidia-l4t-core"]


def _read_text(path: str) -> Optional[str]:
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def _run(cmd: Sequence[str]) -> Optional[str]:
    exe = shutil.which(cmd[0]) or (cmd[0] if Path(cmd[0]).is_file() else None)
    if exe is None:
        return None
    try:
        result = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _tensorrt_version() -> Optional[str]:
    """``tensorrt.__version__``; None when absent. The ``tensorrt-stubs`` package installs a
    ``tensorrt`` namespace with no version: that is not TensorRT."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # ImportError, or a broken install raising OSError on its libraries
        return None
    version = getattr(trt, "__version__", None)
    return str(version) if version else None


@dataclass
class Probes:
    """Where detection reads from (replaced in tests by captured strings)."""

    read_text: Callable[[str], Optional[str]] = _read_text
    run: Callable[[Sequence[str]], Optional[str]] = _run
    tensorrt_version: Callable[[], Optional[str]] = _tensorrt_version
    machine: Callable[[], str] = platform.machine


@dataclass
class GpuInfo:
    name: str
    compute_capability: Optional[str]
    memory_mib: Optional[int]
    driver: Optional[str]


@dataclass
class Detection:
    """The machine as far as the build plan and ``doctor`` care."""

    machine: str
    is_jetson: bool
    device_tree_model: Optional[str] = None
    part_numbers: List[str] = field(default_factory=list)
    l4t: Optional[str] = None
    jetpack: Optional[str] = None
    memory_gb: Optional[float] = None
    profile: Optional[str] = None
    profile_reason: str = ""
    tensorrt: Optional[str] = None
    cuda: Optional[str] = None
    gpus: List[GpuInfo] = field(default_factory=list)

    @property
    def compute_capability(self) -> Optional[str]:
        return self.gpus[0].compute_capability if self.gpus else None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def parse_l4t_release(text: str) -> Optional[str]:
    """'# R35 (release), REVISION: 4.1, GCID: …' -> '35.4.1' ('REVISION: 1.0' -> '35.1.0')."""
    match = _L4T.search(text)
    if match is None:
        return None
    major, minor, patch = match.group(1), match.group(2), match.group(3) or "0"
    return f"{major}.{minor}.{patch}"


def _l4t_from_dpkg(version: str) -> Optional[str]:
    """'35.4.1-20230801124926' -> '35.4.1' (the nvidia-l4t-core package version)."""
    match = re.match(r"^'?(\d+\.\d+(?:\.\d+)?)", version.strip())
    return match.group(1) if match else None


def jetpack_for_l4t(l4t: str, profiles: Sequence[DeviceProfile]) -> Optional[str]:
    """JetPack of an L4T release: exact match, else the newest known JetPack of the same
    major.minor marked with '~' (L4T patch releases such as 36.4.7 postdate the table)."""
    releases: List[JetPackRelease] = [r for p in profiles for r in p.jetpacks if r.l4t]
    parts = (l4t.split(".") + ["0", "0"])[:3]
    full = ".".join(parts)
    for release in releases:
        if release.l4t == full:
            return release.jetpack
    prefix = ".".join(parts[:2]) + "."
    same = [r.jetpack for r in releases if (r.l4t or "").startswith(prefix)]
    if not same:
        return None
    return "~" + max(same, key=lambda v: tuple(int(p) for p in v.split(".")))


def parse_nvidia_smi(text: str) -> List[GpuInfo]:
    """Lines of ``nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version
    --format=csv,noheader,nounits``."""
    gpus: List[GpuInfo] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4 or not cells[0]:
            continue
        name, cap, memory, driver = cells
        gpus.append(GpuInfo(
            name=name, compute_capability=cap if re.match(r"^\d+\.\d+$", cap) else None,
            memory_mib=int(memory) if memory.isdigit() else None, driver=driver or None))
    return gpus


def _cuda_version(probes: Probes) -> Optional[str]:
    raw = probes.read_text("/usr/local/cuda/version.json")
    if raw:
        try:
            return str(json.loads(raw)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    raw = probes.read_text("/usr/local/cuda/version.txt")
    match = _CUDA_TXT.search(raw or "")
    if match:
        return match.group(1)
    for nvcc in ("nvcc", "/usr/local/cuda/bin/nvcc"):
        match = _NVCC.search(probes.run([nvcc, "--version"]) or "")
        if match:
            return match.group(2)
    return None


def _memory_gb(probes: Probes) -> Optional[float]:
    match = re.search(r"^MemTotal:\s+(\d+) kB", probes.read_text("/proc/meminfo") or "", re.M)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def _match_jetson(model: str, parts: Sequence[str], memory_gb: Optional[float],
                  profiles: Sequence[DeviceProfile]) -> "tuple[Optional[str], str]":
    by_part = [p for p in profiles if set(parts) & set(p.part_numbers)]
    if by_part:
        hit = by_part[0]
        return hit.name, f"module part number {sorted(set(parts) & set(hit.part_numbers))[0]}"
    by_model = [p for p in profiles if p.is_jetson
                and any(model == m or model.startswith(m) for m in p.device_tree_models)]
    if not by_model:
        return None, (f"device-tree model {model!r} matches no profile; name the profile "
                      "(`edge-resnet devices` lists them)")
    if len(by_model) == 1 or memory_gb is None:
        names = ", ".join(p.name for p in by_model)
        reason = "device-tree model" if len(by_model) == 1 else (
            f"device-tree model (ambiguous without memory size: {names})")
        return by_model[0].name, reason
    best = min(by_model, key=lambda p: abs((p.memory_gb or 0) - memory_gb))
    return best.name, f"device-tree model and {memory_gb} GiB memory"


def detect(probes: Optional[Probes] = None) -> Detection:
    """Describe this machine; never raises for a missing file or tool (they are findings)."""
    probes = probes or Probes()
    profiles = all_profiles()
    model = (probes.read_text("/proc/device-tree/model") or "").strip("\x00\n ") or None
    release = probes.read_text("/etc/nv_tegra_release")
    tegra_model = bool(model) and ("jetson" in (model or "").lower() or model == "quill")
    found = Detection(machine=probes.machine(), is_jetson=tegra_model or release is not None,
                      device_tree_model=model)
    compatible = probes.read_text("/proc/device-tree/compatible") or ""
    found.part_numbers = sorted(set(_PART.findall(compatible)))
    found.memory_gb = _memory_gb(probes)
    found.l4t = parse_l4t_release(release or "")
    if found.l4t is None and found.is_jetson:
        dpkg = probes.run(_DPKG_L4T)
        found.l4t = _l4t_from_dpkg(dpkg) if dpkg else None
    found.jetpack = jetpack_for_l4t(found.l4t, profiles) if found.l4t else None
    found.tensorrt = probes.tensorrt_version()
    found.cuda = _cuda_version(probes)
    if found.is_jetson:
        found.profile, found.profile_reason = _match_jetson(
            model or "", found.part_numbers, found.memory_gb, profiles)
        return found
    found.gpus = parse_nvidia_smi(probes.run(_SMI_QUERY) or "")
    if found.gpus and found.machine in ("x86_64", "AMD64"):
        found.profile, found.profile_reason = "x86-dgpu", f"nvidia-smi: {found.gpus[0].name}"
    elif found.gpus:
        found.profile_reason = f"NVIDIA GPU on {found.machine}: no profile for this platform"
    else:
        found.profile_reason = "no Jetson device tree and no NVIDIA GPU from nvidia-smi"
    return found
