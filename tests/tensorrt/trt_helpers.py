"""Helpers of the hardware suite (imported by its conftest and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from edge_resnet.devices.plan import BatchProfile, BuildRequest, plan_build
from edge_resnet.devices.profiles import DeviceProfile
from edge_resnet.engine.artifacts import collect_artifacts
from edge_resnet.preprocessing import preprocess_batch


@dataclass
class TrtMachine:
    profile: DeviceProfile
    trt_version: str
    compute_capability: Optional[str]

    @property
    def major(self) -> int:
        return int(self.trt_version.split(".")[0])


def build(machine: TrtMachine, models: Any, precision: str, out: Path, *, batch: str = "1:8:16",
          cache: Optional[Path] = None, dla: Optional[int] = None,
          max_gpu_fallback: Optional[int] = None) -> Any:
    """Plan and build (or find in the cache) one engine; returns the CacheEntry."""
    from edge_resnet.engine.builder import build_cached

    artifacts = collect_artifacts(list(models), cache)
    request = BuildRequest(precision=precision, out_dir=str(out), batch=BatchProfile.parse(batch),
                           dla_core=dla, max_gpu_fallback=max_gpu_fallback,
                           compute_capability=machine.compute_capability)
    plan = plan_build(machine.profile, machine.trt_version, artifacts, request)
    chosen = next(m for m in artifacts.models if m.path == plan.input_model)
    return build_cached(plan, chosen.sha256, artifacts.cache_sha256, progress=False)


def top1(backend: Any, images: List[Tuple[np.ndarray, int]], batch: int = 8) -> float:
    """Top-1 accuracy (0..1) of ``backend`` on labeled images, in batches of ``batch``."""
    hits = 0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        logits = backend.infer(preprocess_batch([im for im, _ in chunk], backend.spec)).logits
        hits += int(np.sum(logits.argmax(1) == np.array([y for _, y in chunk])))
    return hits / len(images)


def runtime_media() -> Any:
    """(digit_frames, write_video) from tests/runtime/media.py: one way to make test videos."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "runtime" / "media.py"
    spec = importlib.util.spec_from_file_location("runtime_media", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digit_frames, module.write_video
