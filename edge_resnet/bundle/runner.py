"""Run the active release of a slot root, reload it on SIGHUP, confirm it after good frames.

``edge-resnet bundle run ROOT SOURCE [OUTPUT ...]`` builds the runtime pipeline
(:func:`edge_resnet.runtime.service.build_pipeline`) on the model that ``ROOT/current`` names.
SIGHUP (sent by whoever switched the slot: an OTA hook, an operator) drains the running pipeline
and starts a new one on whatever release is active then. With ``commit_after=N``, a release that
is still *pending* is committed once the runtime has turned N frames into results, which is the
"first N good frames" confirmation the slot root waits for; a release that never gets there is
rolled back by the pending timeout. SIGINT/SIGTERM stop it as ``edge-resnet run`` does.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edge_resnet.bundle.errors import BundleError
from edge_resnet.bundle.install import Release, active_release, commit
from edge_resnet.core import EdgeResnetError

__all__ = ["run_release"]

log = logging.getLogger(__name__)


class _Watcher(threading.Thread):
    """Stops the pipeline when a reload is asked for; commits a pending release after N frames."""

    def __init__(self, root: Path, release: Release, pipeline: Any, reload: threading.Event,
                 commit_after: Optional[int]) -> None:
        super().__init__(daemon=True, name="edge-resnet-bundle-watch")
        self.root, self.release, self.pipeline = root, release, pipeline
        self.reload, self.commit_after = reload, commit_after
        self.done = threading.Event()
        self.committed = False

    def run(self) -> None:
        while not self.done.wait(0.1):
            if self.reload.is_set():
                self.pipeline.stop()
                return
            if self.commit_after is None or self.committed or self.release.state != "pending":
                continue
            if self.pipeline.metrics.counts().get("processed", 0) >= self.commit_after:
                self.committed = True
                self._commit()

    def _commit(self) -> None:
        try:
            now = active_release(self.root)
            if (now.slot, now.manifest.version) != (self.release.slot,
                                                     self.release.manifest.version):
                return  # switched meanwhile: the next reload deals with the new release
            commit(self.root)
            log.warning("committed %s %s after %d good frames", now.manifest.name,
                        now.manifest.version, self.commit_after)
        except EdgeResnetError as exc:
            log.warning("could not commit: %s", exc)


def run_release(root: "str | Path", source: str, outputs: Sequence[str] = ("-",), *,
                backend: str = "onnxruntime", threads: int = 0,
                source_options: Any = None, config: Any = None,
                commit_after: Optional[int] = None, stream: Any = None,
                pipeline_options: Optional[Dict[str, Any]] = None,
                service_options: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Run the active release until the source ends or a stop signal; one snapshot per run.

    ``pipeline_options`` go to :func:`~edge_resnet.runtime.service.build_pipeline` (gallery,
    backend_options, camera_id, ...; ``model_name``/``model_version`` default to the release's
    name and version, ``gallery`` to the release's gallery payload), ``service_options`` to
    :func:`~edge_resnet.runtime.service.run_until_signal` (metrics file, port, interval): both
    ``edge-resnet run --bundle-root`` and ``edge-resnet bundle run`` come through here.
    """
    from edge_resnet.runtime.service import build_pipeline, run_until_signal

    if commit_after is not None and commit_after < 1:
        raise BundleError(f"commit_after must be at least 1 frame, got {commit_after}")
    root = Path(root)
    reload = threading.Event()
    previous = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    snapshots: List[Dict[str, Any]] = []
    try:
        while True:
            reload.clear()
            release = active_release(root)
            model, model_backend = release.runnable(backend)
            log.warning("running %s %s (%s) from slot %s: %s on %s", release.manifest.name,
                        release.manifest.version, release.state, release.slot,
                        model.relative_to(release.path), model_backend)
            pipeline = build_pipeline(model, source, outputs, backend=model_backend,
                                      threads=threads, source_options=source_options,
                                      config=config, **_pipeline_options(release,
                                                                         pipeline_options))
            watcher = _Watcher(root, release, pipeline, reload, commit_after)
            watcher.start()
            try:
                snapshot = run_until_signal(pipeline, stream=stream, **(service_options or {}))
            finally:
                watcher.done.set()
            snapshot["release"] = {"version": release.manifest.version, "slot": release.slot}
            snapshots.append(snapshot)
            if not reload.is_set() or snapshot.get("stopped_by_signal"):
                return snapshots
            log.warning("SIGHUP: reloading the active release")
    finally:
        signal.signal(signal.SIGHUP, previous)


def _pipeline_options(release: Release, given: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The caller's pipeline options, with the release's name, version and gallery as defaults
    (so events and metrics say which release produced them, also after a reload)."""
    options = {k: v for k, v in (given or {}).items() if v is not None}
    options.setdefault("model_name", release.manifest.name)
    options.setdefault("model_version", release.manifest.version)
    galleries = release.manifest.by_role("gallery")
    if galleries and "gallery" not in options:
        options["gallery"] = release.path / galleries[0].path
    return options
