"""Engines at install: which TensorRT engine each model payload needs on this device, whether the
bundle carries it, and building the missing ones into the staged slot.

For every model payload the device wants one engine: the payload's precision, for this device's
profile (``--device`` or detected) and the installed TensorRT, batch 1 (or the model's fixed
batch). :func:`decide_engines` is pure: it plans each engine with
:func:`~edge_resnet.devices.plan.plan_build` and names it by the engine cache's key
(:func:`~edge_resnet.engine.cache.cache_key`, sha256 of the record: model sha256, device, compute
capability, TensorRT, precision, batch, SDK, ...). A carried engine whose ``engine_key`` is that
hash is used as it is; any other carried engine (another TensorRT, device, SDK) is left unused
and the record says why. :func:`build_missing` runs the builder for the rest into
``<staging>/engines`` through the engine cache (sidecar with key and provenance) and fsyncs
every file it wrote. Without TensorRT nothing is built: the record says which engine was wanted,
that TensorRT is absent, and which backend runs the ONNX payload instead.
The TensorRT call is :attr:`EngineEnv.build_engine` (``edge_resnet.engine.builder.build_engine``
on a device); tests inject a fake there. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from edge_resnet.bundle import fsops
from edge_resnet.bundle.errors import EngineBuildError
from edge_resnet.bundle.manifest import Manifest, Payload
from edge_resnet.core import EdgeResnetError
from edge_resnet.devices.plan import (BatchProfile, BuildArtifacts, BuildPlan, BuildRequest,
                                      OnnxArtifact, plan_build)
from edge_resnet.engine.cache import cache_key, engine_path, get_or_build
from edge_resnet.fingerprints import sha256_json

__all__ = ["ENGINE_BACKENDS", "EngineDecision", "EngineEnv", "build_missing", "decide_engines",
           "detect_env", "unused_engines"]

# --backend values under which the device wants engines (others run the ONNX as asked).
ENGINE_BACKENDS = ("auto", "tensorrt")
BuildEngine = Callable[[BuildPlan, Path, Path, bool], Dict[str, Any]]
# Fields of an engine cache key worth naming when a carried engine is not this device's.
_KEY_FIELDS = ("device", "tensorrt", "compute_capability", "precision", "model_sha256",
               "sdk_version", "batch", "dla_core", "input_kind", "strongly_typed", "flags",
               "calibration_cache_sha256")


@dataclass
class EngineEnv:
    """This device as far as engines go, and the TensorRT build call."""

    device: Optional[str]  # profile name (--device, or detected); None: unknown
    device_reason: str  # how the device was known, or why it is not
    tensorrt: Optional[str]  # installed TensorRT version; None: not installed
    compute_capability: Optional[str]
    build_engine: Optional[BuildEngine] = None  # None: edge_resnet.engine.builder.build_engine
    engine_backend: str = "tensorrt"  # the backend engines are health-checked and run with


def detect_env(device: Optional[str]) -> EngineEnv:
    """The real device: :func:`edge_resnet.devices.detect` (TensorRT version, GPU, profile)."""
    from edge_resnet.devices.detect import detect

    found = detect()
    if device is not None:
        return EngineEnv(device, "--device", found.tensorrt, found.compute_capability)
    return EngineEnv(found.profile, found.profile_reason, found.tensorrt,
                     found.compute_capability)


@dataclass(frozen=True)
class EngineDecision:
    """What runs one model payload on this device, and why."""

    model: str  # the model payload's path in the slot
    precision: str
    device: Optional[str]
    tensorrt: Optional[str]
    action: str  # "build", "carried" or "onnx"
    runs: str  # slot-relative file the health check and the runtime run
    backend: str
    detail: str
    key: Optional[str] = None  # sha256 of the engine cache key record
    plan: Optional[BuildPlan] = None
    key_record: Optional[Dict[str, Any]] = None

    @property
    def engine(self) -> Optional[str]:
        return self.runs if self.action in ("build", "carried") else None

    def to_json(self) -> Dict[str, Any]:
        return {"model": self.model, "precision": self.precision, "device": self.device,
                "tensorrt": self.tensorrt,
                "action": "built" if self.action == "build" else self.action,
                "engine": self.engine, "key": self.key, "runs": self.runs,
                "backend": self.backend, "detail": self.detail}


def _onnx(item: Payload, backend: str, detail: str, env: EngineEnv) -> EngineDecision:
    return EngineDecision(item.path, item.precision or "fp32", env.device, env.tensorrt, "onnx",
                          item.path, backend, f"{detail}, so {item.path} runs on {backend}")


def _plan(item: Payload, artifact: OnnxArtifact, env: EngineEnv, out_dir: Path,
          batch: Optional[BatchProfile]) -> BuildPlan:
    from edge_resnet.devices.profiles import get_profile

    if env.device is None:
        raise EngineBuildError(f"TensorRT {env.tensorrt} is installed but this device has no "
                               f"profile ({env.device_reason}): give device=NAME so its "
                               "engines can be planned, or backend=onnxruntime to run the "
                               "ONNX payload")
    if batch is None:  # the model's fixed batch, or 1 (what `run` uses by default)
        fixed = artifact.batch or 1
        batch = BatchProfile(fixed, fixed, fixed)
    request = BuildRequest(precision=item.precision or "fp32", out_dir=str(out_dir),
                           batch=batch, compute_capability=env.compute_capability)
    try:
        return plan_build(get_profile(env.device), str(env.tensorrt),
                          BuildArtifacts(models=(artifact,)), request)
    except EdgeResnetError as exc:  # PlanError, an unknown profile name
        raise EngineBuildError(f"{item.path}: no {request.precision} engine for {env.device} "
                               f"with TensorRT {env.tensorrt}: {exc}") from None


def _carried(manifest: Manifest, key: str) -> Optional[Payload]:
    """The carried engine (not its sidecar) stored under ``key`` whose sidecar rides along."""
    paths = {p.path for p in manifest.by_role("engine")}
    for item in manifest.by_role("engine"):
        if item.engine_key == key and not item.path.endswith(".json") \
                and item.path + ".json" in paths:
            return item
    return None


def decide_engines(manifest: Manifest, env: EngineEnv, backend: str,
                   artifacts: Mapping[str, OnnxArtifact], onnx_backends: Mapping[str, str],
                   out_dir: Path, batch: Optional[BatchProfile] = None) -> List[EngineDecision]:
    """One decision per model payload. ``artifacts``: the staged ONNX files described
    (needed only when TensorRT is present), ``onnx_backends``: the backend that runs each ONNX
    payload when no engine does, ``out_dir``: the staged slot's ``engines`` folder, ``batch``:
    the engines' batch profile (None: the model's fixed batch, else 1)."""
    decisions = []
    for item in manifest.by_role("model"):
        precision = item.precision or "fp32"
        wanted = f"wanted a {precision} TensorRT engine for {env.device or 'this device'}"
        if backend not in ENGINE_BACKENDS:
            decisions.append(_onnx(item, backend, f"backend {backend} asked: no engine", env))
            continue
        if env.tensorrt is None:
            if backend == "tensorrt":
                raise EngineBuildError(f"{item.path}: backend=tensorrt, but TensorRT is not "
                                       "installed on this device (install it, or use backend=auto "
                                       "to run the ONNX payload)")
            decisions.append(_onnx(item, onnx_backends[item.path],
                                   f"{wanted}; TensorRT is not installed here", env))
            continue
        plan = _plan(item, artifacts[item.path], env, out_dir, batch)
        record = cache_key(plan, item.sha256)
        key = sha256_json(record)
        carried = _carried(manifest, key)
        if carried is not None:
            decisions.append(EngineDecision(
                item.path, precision, env.device, env.tensorrt, "carried", carried.path,
                env.engine_backend, f"{wanted} (TensorRT {env.tensorrt}); the bundle carries "
                f"it ({carried.path}, same engine cache key)", key, plan, record))
            continue
        built = engine_path(plan, record).relative_to(out_dir.parent).as_posix()
        decisions.append(EngineDecision(
            item.path, precision, env.device, env.tensorrt, "build", built, env.engine_backend,
            f"{wanted} (TensorRT {env.tensorrt}); built at install", key, plan, record))
    return decisions


def _differences(carried: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    diffs = [f"{name} {carried.get(name)} (this device: {wanted.get(name)})"
             for name in _KEY_FIELDS if carried.get(name) != wanted.get(name)]
    return ", ".join(diffs) or "a different key record"


def unused_engines(manifest: Manifest, decisions: List[EngineDecision],
                   carried_keys: Mapping[str, Optional[Dict[str, Any]]]) -> List[Dict[str, str]]:
    """Carried engines no decision uses, each with the reason (``carried_keys``: the key record
    of each carried engine's sidecar, None when it has none)."""
    used = {d.runs for d in decisions if d.action == "carried"}
    out = []
    for item in manifest.by_role("engine"):
        if item.path.endswith(".json") or item.path in used:
            continue
        same = [d for d in decisions if d.precision == item.precision and d.key_record]
        record = carried_keys.get(item.path)
        if not any(d.key_record for d in decisions):
            reason = "not used: " + (decisions[0].detail if decisions else "no model")
        elif record is None:
            reason = (f"its key {item.engine_key!r} has no engine cache sidecar to compare; "
                      "this device's engines are keyed by the cache key hash")
        elif not same:
            reason = f"built for {record.get('precision')}; no model of that precision here"
        else:
            reason = "built for " + _differences(record, same[0].key_record or {})
        out.append({"engine": item.path, "reason": reason})
    return out


def build_missing(decisions: List[EngineDecision], staging: Path, env: EngineEnv,
                  progress: bool = True) -> None:
    """Build every ``build`` decision into ``staging/engines`` (engine, sidecar, build log,
    layer report, timing cache), then fsync each file and the folder; any failure is an
    :class:`EngineBuildError` naming the model, device and TensorRT."""
    todo = [d for d in decisions if d.action == "build"]
    if not todo:
        return
    folder = staging / "engines"
    if not folder.is_dir():
        fsops.make_dir(folder)
    for decision in todo:
        _build_one(decision, staging, env, progress)
    for path in sorted(folder.iterdir()):
        if path.is_file():
            fsops.fsync_file(path)
    fsops.fsync_dir(folder)


def _build_one(decision: EngineDecision, staging: Path, env: EngineEnv, progress: bool) -> None:
    from edge_resnet.engine.artifacts import engine_artifact, model_metadata

    plan = decision.plan
    if plan is None:  # decide_engines plans every "build" decision
        raise EngineBuildError(f"{decision.model}: no build plan")
    build = env.build_engine or _tensorrt_build
    final = staging / decision.runs
    model_sha = str((decision.key_record or {}).get("model_sha256", ""))
    try:
        spec = model_metadata(plan.input_model)

        def run(tmp: Path) -> Dict[str, Any]:
            return dict(build(plan, tmp, final, progress), spec=spec)
        entry = get_or_build(plan, model_sha, "", run,
                             artifact=engine_artifact(plan, model_sha))
    except Exception as exc:  # any builder failure fails the install
        text = " ".join(str(exc).split()) if isinstance(exc, EdgeResnetError) \
            else f"{type(exc).__name__}: {exc}"
        raise EngineBuildError(f"{decision.model}: building the {decision.precision} engine for "
                               f"{decision.device} with TensorRT {decision.tensorrt} failed: "
                               f"{text}") from None
    if entry.engine != final:
        raise EngineBuildError(f"{decision.model}: the engine cache wrote {entry.engine.name}, "
                               f"the plan named {final.name}")


def _tensorrt_build(plan: BuildPlan, out: Path, final: Path, progress: bool) -> Dict[str, Any]:
    """The real build: TensorRT's builder through :mod:`edge_resnet.engine.builder` (the same
    call ``edge-resnet build`` makes; the engine cache around it is :func:`_build_one`'s)."""
    from edge_resnet.engine.builder import build_engine

    return build_engine(plan, out, final, progress)


def describe_models(staging: Path, manifest: Manifest) -> Dict[str, OnnxArtifact]:
    """Header facts of every staged ONNX payload (opset, input, batch) for the plans."""
    from edge_resnet.engine.artifacts import describe_onnx

    out = {}
    for item in manifest.by_role("model"):
        try:
            out[item.path] = describe_onnx(staging / item.path)
        except EdgeResnetError as exc:
            raise EngineBuildError(f"{item.path}: cannot plan an engine for it: {exc}") from None
    return out


def carried_key_records(staging: Path, manifest: Manifest) -> Dict[str, Optional[Dict[str, Any]]]:
    """Each carried engine's key record from its staged sidecar (None: no readable sidecar)."""
    from edge_resnet.engine.cache import read_sidecar

    out: Dict[str, Optional[Dict[str, Any]]] = {}
    for item in manifest.by_role("engine"):
        if item.path.endswith(".json"):
            continue
        try:
            key = read_sidecar(staging / item.path).get("key")
        except EdgeResnetError:
            key = None
        out[item.path] = key if isinstance(key, dict) else None
    return out


def onnx_backend_choices(staging: Path, manifest: Manifest, backend: str) -> Dict[str, str]:
    """The backend each ONNX payload runs on when no engine does: ``backend`` as asked, or for
    ``auto``/``tensorrt`` the ``run --backend auto`` choice for that file on this machine."""
    from edge_resnet.backends.reference import choose_backend, installed_runtimes, read_cpu_flags

    out = {}
    for item in manifest.by_role("model"):
        if backend not in ENGINE_BACKENDS:
            out[item.path] = backend
            continue
        try:
            out[item.path] = choose_backend(staging / item.path, read_cpu_flags(),
                                            installed_runtimes())[0]
        except EdgeResnetError:  # unreadable: the health check's load reports it
            out[item.path] = "auto"
    return out


def prepare(staging: Path, manifest: Manifest, backend: str, env: EngineEnv,
            progress: bool = True, batch: Optional[BatchProfile] = None
            ) -> Tuple[List[EngineDecision], List[Dict[str, str]]]:
    """Decide, build what is missing, and list the carried engines left unused."""
    need_plans = backend in ENGINE_BACKENDS and env.tensorrt is not None
    artifacts = describe_models(staging, manifest) if need_plans else {}
    choices = onnx_backend_choices(staging, manifest, backend)
    decisions = decide_engines(manifest, env, backend, artifacts, choices, staging / "engines",
                               batch)
    build_missing(decisions, staging, env, progress)
    return decisions, unused_engines(manifest, decisions, carried_key_records(staging, manifest))
