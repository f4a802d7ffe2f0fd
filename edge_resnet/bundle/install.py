"""Device commands: verify, install (stage, health-check, switch), commit, rollback, status.

``install`` verifies the whole bundle before touching the disk (a refusal leaves everything as
it was), then under the root's lock repairs leftovers, streams the payload into ``.staging``
(hashing it again against the signed manifest, fsync'ing every file and directory), runs the
health check on the staged files, and only then renames the staging directory into the inactive
slot and switches ``current`` to it: the release is *pending* until ``commit``. A failed health
check discards the staging directory and records the reason (exit 1); a pending release that is
not committed within its timeout is rolled back by the next command that looks (``status``
included). Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge_resnet import __version__
from edge_resnet.bundle import fsops
from edge_resnet.bundle.archive import Limits, read_bundle
from edge_resnet.bundle import engines
from edge_resnet.bundle.errors import BundleError, EngineBuildError, HealthCheckError, SlotError
from edge_resnet.bundle.health import ModelCheck, check_release
from edge_resnet.bundle.manifest import Manifest, Payload, parse_manifest, version_key
from edge_resnet.bundle.slots import SlotRoot, event, locked, repair, roll_back
from edge_resnet.devices.plan import BatchProfile

__all__ = ["InstallOptions", "Release", "active_release", "commit", "install", "rollback",
           "status", "verify"]

DEFAULT_PENDING_TIMEOUT_S = 900.0


@dataclass
class InstallOptions:
    """What the device knows about itself and how strict to be."""

    device: Optional[str] = None
    allow_downgrade: bool = False
    # auto: TensorRT engines where TensorRT is installed, else the ONNX on `run --backend auto`'s
    # choice; tensorrt: engines or fail; another name: the ONNX payload on that backend.
    backend: str = "auto"
    pending_timeout_s: float = DEFAULT_PENDING_TIMEOUT_S
    limits: Limits = Limits()
    engine_env: Optional[engines.EngineEnv] = None  # None: detected at install
    build_progress: bool = True  # the builder's heartbeat on stderr (builds take minutes)
    engine_batch: Optional[BatchProfile] = None  # None: the model's fixed batch, else 1


@dataclass(frozen=True)
class Release:
    """The release in the active slot, as the runtime needs it."""

    slot: str
    path: Path
    manifest: Manifest
    state: str
    record: Dict[str, Any] = field(default_factory=dict)  # the slot's entry in state.json

    @property
    def model(self) -> Path:
        """The primary model (the first ``--model`` given to ``bundle create``)."""
        return self.path / self.manifest.by_role("model")[0].path

    def runnable(self, backend: str = "auto") -> Tuple[Path, str]:
        """(file, backend) the runtime runs: the engine install built or took from the bundle
        for the primary model when ``backend`` is ``auto`` or ``tensorrt``, else the ONNX."""
        primary = self.manifest.by_role("model")[0].path
        for entry in self.record.get("engines", []):
            if entry.get("model") == primary and entry.get("engine") \
                    and backend in ("auto", "tensorrt"):
                return self.path / entry["engine"], "tensorrt"
        return self.model, backend


def _installed(root: Optional[Path]) -> Optional[Dict[str, Any]]:
    """Read-only view of the active release's record (no repair, no lock)."""
    if root is None or not root.is_dir():
        return None
    slots = SlotRoot(root)
    active = slots.active_slot()
    return slots.load_state()["slots"].get(active) if active else None


def _compatibility(manifest: Manifest, options: InstallOptions,
                   installed: Optional[Dict[str, Any]]) -> None:
    """Device, SDK and anti-downgrade checks on a verified manifest (before any payload)."""
    if manifest.devices:
        if options.device is None:
            raise BundleError(f"bundle targets {', '.join(manifest.devices)}; say which device "
                              "this is with device=NAME (or EDGE_RESNET_DEVICE)")
        if options.device not in manifest.devices:
            raise BundleError(f"bundle is for {', '.join(manifest.devices)}, not for "
                              f"{options.device}; refusing it")
    _check_int8_weights(manifest, options)
    if version_key(__version__) < version_key(manifest.min_sdk_version):
        raise BundleError(f"bundle needs edge-resnet >= {manifest.min_sdk_version}; this device "
                          f"has {__version__}: upgrade the SDK first")
    if installed is None:
        return
    if installed.get("name") != manifest.name:
        raise BundleError(f"bundle is {manifest.name!r} but this root runs "
                          f"{installed.get('name')!r}; install another product under another slot root")
    old = str(installed.get("version"))
    if version_key(manifest.version) <= version_key(old) and not options.allow_downgrade:
        same = version_key(manifest.version) == version_key(old)
        raise BundleError(f"{manifest.name} {manifest.version} is "
                          f"{'already installed' if same else 'older than the installed ' + old}"
                          "; refusing (allow_downgrade installs it anyway)")


def _check_int8_weights(manifest: Manifest, options: InstallOptions) -> None:
    """Pre-quantized (int8) weights are documented for TensorRT 10+; refuse them on older."""
    if options.backend not in engines.ENGINE_BACKENDS or not manifest.provenance.get("int8_weights"):
        return
    try:
        from importlib.metadata import PackageNotFoundError, version
        installed = version("tensorrt")
    except (ImportError, PackageNotFoundError):
        return  # the health check's backend load reports a missing TensorRT
    if int(installed.split(".")[0]) < 10:
        raise BundleError(f"bundle stores int8 weights, documented for TensorRT >= 10; this "
                          f"device has TensorRT {installed}: ship a float-weight QDQ bundle")


def verify(bundle: Path, cert: Any, options: InstallOptions,
           root: Optional[Path] = None) -> Manifest:
    """Full verification, no writes: signature, schema, hashes, device, anti-downgrade."""
    installed = _installed(root)
    try:
        return read_bundle(bundle, cert, lambda m: _compatibility(m, options, installed),
                           limits=options.limits)
    except OSError as exc:
        raise BundleError(f"cannot read {bundle}: {exc.strerror or exc}") from None


class _Sink:
    """Streams payload files into the staging directory."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.open: List[fsops.StagedFile] = []

    def __call__(self, payload: Payload) -> fsops.StagedFile:
        target = self.staging.joinpath(*payload.path.split("/"))
        staged = fsops.StagedFile(target)
        self.open.append(staged)
        return staged

    def close_all(self) -> None:
        for staged in self.open:
            staged.close()


def _stage(slots: SlotRoot, bundle: Path, cert: Any, options: InstallOptions,
           installed: Optional[Dict[str, Any]]) -> Manifest:
    fsops.make_dir(slots.staging)
    sink = _Sink(slots.staging)
    try:
        manifest = read_bundle(bundle, cert, lambda m: _compatibility(m, options, installed),
                               sink, options.limits)
        for name, data in (("manifest.json", manifest.data),
                           ("manifest.sig", manifest.signature)):
            staged = fsops.StagedFile(slots.staging / name)
            staged.write(data)
            staged.finish()
        for folder in sorted({p.path.split("/")[0] for p in manifest.payload}):
            fsops.fsync_dir(slots.staging / folder)
        fsops.fsync_dir(slots.staging)
        return manifest
    finally:
        sink.close_all()


@dataclass
class _Staged:
    """What was staged and checked: the manifest, the engine decisions, the health verdicts."""

    manifest: Manifest
    decisions: List[engines.EngineDecision]
    unused: List[Dict[str, str]]
    checks: List[ModelCheck]


def _record(staged: _Staged, state: str, now: float, timeout: float) -> Dict[str, Any]:
    return {"name": staged.manifest.name, "version": staged.manifest.version, "state": state,
            "installed": now, "pending_since": now, "pending_timeout_s": timeout,
            "health": [c.to_json() for c in staged.checks],
            "engines": [d.to_json() for d in staged.decisions],
            "unused_engines": staged.unused}


def _switch(slots: SlotRoot, state: Dict[str, Any], staged: _Staged,
            options: InstallOptions, now: float) -> str:
    target = slots.inactive_slot()
    state["slots"][target] = _record(staged, "installing", now, options.pending_timeout_s)
    slots.save_state(state)  # from here a repair knows slot `target` is not a release yet
    old = slots.slot_dir(target)
    if old.exists():
        trash = slots.root / f".trash-{target}"
        fsops.rename(old, trash)
        fsops.remove_tree(trash)
    if not old.parent.is_dir():
        fsops.make_dir(old.parent)
    fsops.rename(slots.staging, old)
    fsops.swap_symlink(slots.current, f"slots/{target}")
    state["slots"][target]["state"] = "pending"
    event(state, "install", target, "health check passed; pending commit", now)
    slots.save_state(state)
    return target


def _engine_env(options: InstallOptions) -> engines.EngineEnv:
    if options.engine_env is not None:
        return options.engine_env
    if options.backend not in engines.ENGINE_BACKENDS:  # no engines wanted: nothing to detect
        return engines.EngineEnv(options.device, "--device", None, None)
    return engines.detect_env(options.device)


def _stage_and_check(slots: SlotRoot, bundle: Path, cert: Any, options: InstallOptions,
                     record: Optional[Dict[str, Any]], env: engines.EngineEnv) -> _Staged:
    """Stage the payload, build the missing engines into it, health-check what will run."""
    manifest = _stage(slots, bundle, cert, options, record)
    try:
        decisions, unused = engines.prepare(slots.staging, manifest, options.backend, env,
                                            options.build_progress, options.engine_batch)
    except EngineBuildError as exc:
        raise _EngineFailed(manifest, str(exc)) from None
    runs = {d.model: (d.runs, d.backend) for d in decisions}
    checks = check_release(slots.staging, manifest, options.backend, runs)
    return _Staged(manifest, decisions, unused, checks)


class _EngineFailed(Exception):
    """Internal: the engine stage failed after staging (carries the manifest for the record)."""

    def __init__(self, manifest: Manifest, reason: str) -> None:
        super().__init__(reason)
        self.manifest, self.reason = manifest, reason


def _discarded(slots: SlotRoot, state: Dict[str, Any], kind: str, manifest: Manifest,
               reason: str, kept: Optional[Dict[str, Any]], now: float) -> str:
    """Drop the staging directory, record why; the message for the error."""
    _cleanup(slots)
    event(state, kind, None, f"{manifest.name} {manifest.version}: {reason}", now)
    slots.save_state(state)
    return (f"{manifest.version} discarded and {kept.get('version') if kept else 'nothing'} "
            f"kept: {reason}")


def _as(check: ModelCheck) -> str:
    """' (as ENGINE on BACKEND)' when the check ran the model's engine, not the model."""
    return f" (as {check.ran} on {check.backend})" if check.ran and check.ran != check.path \
        else ""


def install(bundle: Path, cert: Any, root: Path, options: InstallOptions) -> Release:
    """Install ``bundle`` into the inactive slot of ``root`` and switch to it (pending)."""
    verify(bundle, cert, options, root)
    env = _engine_env(options)
    with locked(root) as slots:
        state = repair(slots)
        active = slots.active_slot()
        record = state["slots"].get(active) if active else None
        if record is not None and record.get("state") == "pending":
            raise SlotError(f"{record.get('name')} {record.get('version')} is pending; commit "
                            "or roll it back before installing another release")
        now = time.time()
        try:
            staged = _stage_and_check(slots, bundle, cert, options, record, env)
        except _EngineFailed as exc:
            text = _discarded(slots, state, "engine-failed", exc.manifest, exc.reason, record,
                              now)
            raise EngineBuildError(f"engine stage failed, {text}") from None
        except BaseException as exc:
            _cleanup(slots)
            if isinstance(exc, OSError):
                hint = " (disk full: free space under the root)" \
                    if exc.errno == errno.ENOSPC else ""
                raise BundleError(f"cannot stage into {root}: {exc.strerror or exc}{hint}; "
                                  "nothing was changed") from None
            raise
        failed = [c for c in staged.checks if not c.ok]
        if failed:
            reason = "; ".join(f"{c.path}{_as(c)}: {c.reason}" for c in failed)
            text = _discarded(slots, state, "health-failed", staged.manifest, reason, record, now)
            raise HealthCheckError(f"health check failed, {text}")
        slot = _switch(slots, state, staged, options, now)
        return Release(slot, slots.slot_dir(slot), staged.manifest, "pending",
                       dict(state["slots"][slot]))


def _cleanup(slots: SlotRoot) -> None:
    try:
        fsops.remove_tree(slots.staging)
    except OSError:
        pass  # the next command's repair removes it


def commit(root: Path) -> Dict[str, Any]:
    """Mark the pending active release good (the runtime or the OTA client confirms it)."""
    with locked(root, create=False) as slots:
        state = repair(slots)
        active = slots.active_slot()
        record = state["slots"].get(active) if active else None
        if record is None or record.get("state") != "pending":
            last = state.get("events", [])[-1:]
            why = f" (last event: {last[0]['event']}: {last[0]['detail']})" if last else ""
            raise SlotError(f"no pending release to commit in {root}{why}")
        record.update(state="good", committed=time.time())
        event(state, "commit", active, "committed")
        slots.save_state(state)
        return dict(record)


def rollback(root: Path, reason: str = "rolled back by request",
             if_pending: bool = False) -> Dict[str, Any]:
    """Return to the other slot's good release; the active one is marked failed.

    ``if_pending`` makes it a no-op unless the active release is pending: an OTA client's
    rollback after an install that the health check already refused has nothing to undo.
    """
    with locked(root, create=False) as slots:
        state = repair(slots)
        active = slots.active_slot()
        record = state["slots"].get(active) if active else None
        if if_pending and (record is None or record.get("state") != "pending"):
            return dict(record or {"name": None, "version": None, "state": "empty"})
        if not roll_back(slots, state, reason, time.time()):
            raise SlotError(f"no previous good release in {root} to roll back to")
        return dict(state["slots"][slots.active_slot() or ""])


def status(root: Path) -> Dict[str, Any]:
    """Slots, versions, states and recent events; repairs and expires pending first."""
    with locked(root, create=False) as slots:
        state = repair(slots)
        return {"root": str(root), "active": slots.active_slot(), "slots": state["slots"],
                "events": state.get("events", [])[-10:]}


def active_release(root: Path) -> Release:
    """The release ``current`` points at (the runtime's model); SlotError when none."""
    slots = SlotRoot(Path(root))
    slot = slots.active_slot()
    if slot is None:
        raise SlotError(f"no release installed under {root}; run `edge-resnet bundle install`")
    path = slots.slot_dir(slot)
    manifest = parse_manifest((path / "manifest.json").read_bytes())
    record = slots.load_state()["slots"].get(slot, {})
    return Release(slot, path, manifest, str(record.get("state", "unknown")), dict(record))
