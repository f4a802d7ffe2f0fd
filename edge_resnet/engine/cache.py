"""Engine cache: one engine per (model, calibration, device, TensorRT, precision, DLA, batch, SDK).

An engine only runs on the GPU model and TensorRT version that built it, and TensorRT's error
for a foreign engine is opaque. So every engine gets a sidecar JSON (``<engine>.json``) holding
its cache key record, and :func:`check_compatible` refuses a foreign engine with a clear message
*before* TensorRT deserializes it. File names follow jetson-inference's readable scheme
(``<model>.<device>.trt<version>.<precision>.<GPU|DLA0>.b<min>-<opt>-<max>.<key>.engine``) plus a
key hash. Two builders of the same engine serialize on a lock file: the second finds the
first's engine and uses it. Device side: Python 3.8, standard library only (fcntl: Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from edge_resnet import __version__ as SDK_VERSION
from edge_resnet.core import ArtifactInfo, InputError, ModelError
from edge_resnet.devices.plan import BuildPlan
from edge_resnet.fingerprints import sha256_json
from edge_resnet.io_utils import atomic_write_json

__all__ = ["SIDECAR_FORMAT", "CacheEntry", "cache_key", "check_compatible", "engine_path",
           "ensure_writable", "file_lock", "get_or_build", "read_engine_artifact", "read_sidecar",
           "write_sidecar"]

SIDECAR_FORMAT = "edge-resnet-engine/1"


def cache_key(plan: BuildPlan, model_sha256: str, cache_sha256: str = "") -> Dict[str, Any]:
    """The record whose hash names the engine (every field that changes the engine)."""
    if not model_sha256:
        raise InputError("the engine cache key needs the model's sha256")
    return {"model_sha256": model_sha256,
            "calibration_cache_sha256": cache_sha256 if plan.calibration_cache else "",
            "device": plan.device, "compute_capability": plan.compute_capability,
            "tensorrt": plan.trt_version, "precision": plan.precision,
            "input_kind": plan.input_kind, "dla_core": plan.dla_core,
            "batch": [plan.batch.min, plan.batch.opt, plan.batch.max],
            "strongly_typed": plan.strongly_typed, "flags": sorted(plan.flags),
            "sdk_version": SDK_VERSION}


def engine_path(plan: BuildPlan, key: Dict[str, Any]) -> Path:
    stem = Path(plan.input_model).name
    for suffix in (".onnx",):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    unit = "GPU" if plan.dla_core is None else f"DLA{plan.dla_core}"
    b = plan.batch
    name = (f"{stem}.{plan.device}.trt{plan.trt_version}.{plan.precision}.{unit}."
            f"b{b.min}-{b.opt}-{b.max}.{sha256_json(key)[:12]}.engine")
    return Path(plan.out_dir) / name


@dataclass
class CacheEntry:
    engine: Path
    sidecar: Path
    hit: bool


def _sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def write_sidecar(engine: Path, key: Dict[str, Any], plan: BuildPlan,
                  extra: Optional[Dict[str, Any]] = None) -> Path:
    record = {"format": SIDECAR_FORMAT, "key": key, "plan": plan.to_dict(), **(extra or {})}
    return atomic_write_json(_sidecar_path(engine), record)


def read_sidecar(engine: "str | Path") -> Dict[str, Any]:
    path = _sidecar_path(Path(engine))
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{engine} has no sidecar {path.name} (written by `edge-resnet "
                         "build`): rebuild the engine with edge-resnet") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read engine sidecar {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise ModelError(f"{path}: sidecar format {found!r} is not {SIDECAR_FORMAT!r}; "
                         "rebuild the engine with this edge-resnet version")
    return record


def read_engine_artifact(engine: "str | Path") -> Optional[ArtifactInfo]:
    """The engine's provenance record (``artifact`` in its sidecar: spec, precision, the ONNX
    file's sha256, calibration method, SDK version, ...); None for an engine built from an ONNX
    without edge-resnet metadata. A record of a newer version is refused."""
    data = read_sidecar(engine).get("artifact")
    return None if data is None else ArtifactInfo.from_dict(data)


def check_compatible(record: Dict[str, Any], trt_version: str,
                     compute_capability: Optional[str], device: Optional[str] = None) -> None:
    """Refuse an engine built by another TensorRT or for another GPU, naming both sides."""
    key = record["key"]
    built = (f"TensorRT {key['tensorrt']} on {key['device']} "
             f"(compute capability {key['compute_capability']})")
    here = f"TensorRT {trt_version} (compute capability {compute_capability})"
    if key["tensorrt"] != trt_version:
        raise ModelError(f"engine built with {built}; this machine runs {here}: engines only "
                         "load in the TensorRT that built them — rebuild with `edge-resnet build`")
    if compute_capability and key["compute_capability"] not in (None, compute_capability):
        raise ModelError(f"engine built for {built}; this GPU is {here}: rebuild it here")
    if device and key["device"] != device:
        raise ModelError(f"engine built for {key['device']}, this machine is {device}: rebuild")


def ensure_writable(folder: "str | Path") -> Path:
    """Create ``folder`` and prove a file can be written there, before a minutes-long build
    (an unwritable cache means a silent rebuild on every start)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"engine folder {path} is not writable ({exc.strerror}): choose "
                         "another out_dir or fix its permissions, or every start rebuilds") from exc
    return path


@contextlib.contextmanager
def file_lock(path: "str | Path") -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing); blocks until free."""
    import fcntl

    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def get_or_build(plan: BuildPlan, model_sha256: str, cache_sha256: str,
                 build: Callable[[Path], Dict[str, Any]],
                 artifact: Optional[ArtifactInfo] = None) -> CacheEntry:
    """Return the cached engine for ``plan`` or build it under the lock.

    ``build(tmp_engine_path)`` writes the engine to the path it is given and returns extra
    sidecar fields (build log and report names, timings); the engine is renamed into place only
    when it succeeded, then the sidecar is written, so a reader never sees half an engine.
    ``artifact`` (the engine's provenance record) goes into the sidecar as ``artifact``.
    """
    ensure_writable(plan.out_dir)
    key = cache_key(plan, model_sha256, cache_sha256)
    engine = engine_path(plan, key)
    with file_lock(engine.with_name(engine.name + ".lock")):
        if engine.is_file() and _sidecar_path(engine).is_file():
            record = read_sidecar(engine)
            if record["key"] == key:
                return CacheEntry(engine, _sidecar_path(engine), hit=True)
        tmp = engine.with_name(f".{engine.name}.{os.getpid()}.tmp")
        try:
            extra = build(tmp)
            if artifact is not None:
                extra = dict(extra, artifact=artifact.to_dict())
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise ModelError(f"the build wrote no engine to {tmp}")
            write_sidecar(engine, key, plan, extra)  # sidecar first: an engine never lacks one
            os.replace(tmp, engine)
        finally:
            if tmp.exists():
                tmp.unlink()
    return CacheEntry(engine, _sidecar_path(engine), hit=False)
