"""Device profiles: what each Jetson module (and a generic x86 dGPU) can run, as shipped data.

Profiles are JSON files in ``edge_resnet/devices/profiles/`` so a new module is a data change,
not a code change. Decisions that depend on the hardware (fast INT8, DLA cores, which TensorRT a
JetPack ships) read these fields; nothing is decided from the compute capability alone, because
the TensorRT support matrix marks DLA per compute capability and would give the Orin Nano a DLA
it does not have (facts doc, "Corrections and additions").
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from edge_resnet.core import InputError, ModelError

__all__ = ["DeviceProfile", "JetPackRelease", "all_profiles", "get_profile", "profile_names"]

_PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class JetPackRelease:
    """One JetPack release and the stack it installs (``l4t`` is None where not confirmed)."""

    jetpack: str
    l4t: Optional[str]
    tensorrt: str
    cuda: str
    python: str


@dataclass(frozen=True)
class DeviceProfile:
    """A device family member: capabilities the build plan needs, and how to recognise it."""

    name: str
    display_name: str
    kind: str  # "jetson" or "dgpu"
    soc: Optional[str]
    compute_capability: Optional[str]  # None: read from nvidia-smi at build time (dGPU)
    dla_cores: int
    fast_fp16: bool
    fast_int8: bool
    memory_gb: Optional[int]
    device_tree_models: Tuple[str, ...]
    part_numbers: Tuple[str, ...]
    jetpacks: Tuple[JetPackRelease, ...]
    notes: str = ""
    sources: Tuple[str, ...] = ()

    @property
    def is_jetson(self) -> bool:
        return self.kind == "jetson"

    def tensorrt_versions(self) -> List[str]:
        """TensorRT versions its JetPacks ship, oldest first, without duplicates."""
        seen: List[str] = []
        for release in self.jetpacks:
            if release.tensorrt not in seen:
                seen.append(release.tensorrt)
        return seen

    def releases_for_tensorrt(self, major_minor: Tuple[int, int]) -> List[JetPackRelease]:
        """JetPack releases whose TensorRT has this major.minor."""
        return [r for r in self.jetpacks
                if tuple(int(p) for p in r.tensorrt.split(".")[:2]) == major_minor]

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["jetpacks"] = [asdict(r) for r in self.jetpacks]
        return data


_REQUIRED = ("name", "display_name", "kind", "compute_capability", "dla_cores", "fast_fp16",
             "fast_int8", "memory_gb", "jetpacks")


def _profile_from_dict(data: Mapping[str, Any], origin: str) -> DeviceProfile:
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ModelError(f"device profile {origin} lacks {missing}; reinstall edge-resnet")
    if data["kind"] not in ("jetson", "dgpu"):
        raise ModelError(f"device profile {origin}: kind must be jetson or dgpu")
    try:
        releases = tuple(JetPackRelease(**r) for r in data["jetpacks"])
    except TypeError as exc:
        raise ModelError(f"device profile {origin}: bad jetpacks entry ({exc})") from exc
    return DeviceProfile(
        name=str(data["name"]), display_name=str(data["display_name"]), kind=str(data["kind"]),
        soc=data.get("soc"), compute_capability=data["compute_capability"],
        dla_cores=int(data["dla_cores"]), fast_fp16=bool(data["fast_fp16"]),
        fast_int8=bool(data["fast_int8"]), memory_gb=data["memory_gb"],
        device_tree_models=tuple(data.get("device_tree_models", ())),
        part_numbers=tuple(data.get("part_numbers", ())), jetpacks=releases,
        notes=str(data.get("notes", "")), sources=tuple(data.get("sources", ())))


def load_profile_file(path: "str | Path") -> DeviceProfile:
    """Read one profile JSON (also for user-supplied profiles of custom carriers)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read device profile {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"device profile {path} is not a JSON object")
    return _profile_from_dict(data, str(path))


@lru_cache(maxsize=1)
def _registry() -> Dict[str, DeviceProfile]:
    profiles: Dict[str, DeviceProfile] = {}
    for path in sorted(_PROFILE_DIR.glob("*.json")):
        profile = load_profile_file(path)
        if profile.name != path.stem:
            raise ModelError(f"profile file {path.name} names itself {profile.name!r}")
        profiles[profile.name] = profile
    if not profiles:
        raise ModelError(f"no device profiles under {_PROFILE_DIR}; reinstall edge-resnet")
    return profiles


def profile_names() -> List[str]:
    return sorted(_registry())


def all_profiles() -> List[DeviceProfile]:
    return [_registry()[name] for name in profile_names()]


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name``; an unknown name lists the known ones."""
    profile = _registry().get(name)
    if profile is None:
        raise InputError(f"unknown device {name!r}; known devices: {', '.join(profile_names())} "
                         "(`edge-resnet devices` lists them)")
    return profile
