"""Assemble a pipeline from URIs and run it as a service that stops gracefully on signals.

SIGINT/SIGTERM request a stop: capture ends, frames in flight are drained to the outputs, the
outputs are flushed and closed, the summary is printed, and the process exits 0 (what systemd
expects from ``systemctl stop``). A second signal while draining exits at once with 130.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edge_resnet.backends.base import Backend, load_backend
from edge_resnet.backends.options import BackendOptions
from edge_resnet.core import InputError
from edge_resnet.io_utils import atomic_write_json
from edge_resnet.runtime.events import EventLog, ModelInfo
from edge_resnet.runtime.gallery import load_gallery_for
from edge_resnet.runtime.telemetry import format_summary
from edge_resnet.runtime.outputs import Output, close_all, create_output
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
from edge_resnet.runtime.prometheus import MetricsServer, start_metrics_server
from edge_resnet.runtime.sources import SourceOptions, create_source
from edge_resnet.runtime.systemd import ServiceHealth, SystemdNotifier

__all__ = ["build_pipeline", "run_until_signal"]

log = logging.getLogger(__name__)


def build_pipeline(model: "str | Path", source: str, outputs: Sequence[str] = ("-",), *,
                   backend: str = "onnxruntime", threads: int = 0,
                   source_options: Optional[SourceOptions] = None,
                   config: Optional[PipelineConfig] = None,
                   gallery: "str | Path | None" = None,
                   backend_options: "BackendOptions | Dict[str, Any] | None" = None,
                   gallery_cert: "str | Path | None" = None,
                   camera_id: Optional[str] = None, model_name: Optional[str] = None,
                   model_version: Optional[str] = None) -> Pipeline:
    """Load the backend, parse the source and output URIs, and wire a :class:`Pipeline`.

    ``backend_options``: the backend's typed options (``OnnxRuntimeOptions(...)``, used as
    they are), or settings that join ``threads`` (e.g. pytorch's ``device``).
    ``gallery_cert`` (a fleet certificate) makes a gallery without a valid signature refused.
    ``camera_id``, ``model_name`` and ``model_version`` go into every event and the metrics
    (the model's name defaults to its file name, its version to none).
    Nothing runs until :meth:`Pipeline.run` / :meth:`Pipeline.start`.
    """
    src = create_source(source, source_options)
    _check_model_path(model)
    settings = backend_options if isinstance(backend_options, BackendOptions) else \
        {"threads": threads, **(backend_options or {})}
    engine: Backend = load_backend(backend, model, settings)
    outs: List[Output] = []
    try:
        gal = load_gallery_for(gallery, engine.spec, gallery_cert) \
            if gallery is not None else None
        fps = source_options.fps if source_options else None
        for uri in outputs:
            outs.append(create_output(uri, fps))
        events = EventLog(src.describe(), ModelInfo.from_file(model, model_name, model_version),
                          camera_id)
        return Pipeline(engine, src, outs, config, gallery=gal, events=events)
    except BaseException:
        close_all(outs)
        engine.close()
        raise


def _check_model_path(model: "str | Path") -> None:
    """MODEL must be a file: say so for a folder (not "does not exist") before any backend."""
    path = Path(model)
    if path.is_dir():
        raise InputError(f"MODEL {path} is a folder; give the model file inside it (e.g. "
                         "model.onnx, or a TensorRT .engine)")


def run_until_signal(pipeline: Pipeline, metrics_json: "str | Path | None" = None,
                     stream: Any = None, *, metrics_port: Optional[int] = None,
                     metrics_host: str = "127.0.0.1", metrics_interval_s: float = 5.0,
                     notifier: Optional[SystemdNotifier] = None) -> Dict[str, Any]:
    """Run ``pipeline`` in the calling (main) thread, stopping gracefully on SIGINT/SIGTERM.

    While it runs: systemd READY/WATCHDOG notifications (under ``Type=notify``), Prometheus
    metrics on ``metrics_host:metrics_port`` when a port is given, and ``metrics_json``
    rewritten atomically every ``metrics_interval_s``. Returns the final metrics snapshot, also
    printed to ``stream`` (stderr) and written to ``metrics_json``, also when the run fails
    (e.g. the source never came back), with the error in it.
    """
    stopping = threading.Event()
    health = ServiceHealth(pipeline.metrics, notifier)
    json_out = _MetricsJson(pipeline, metrics_json, metrics_interval_s)

    def handle(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            os._exit(130)  # second signal: the user insists
        stopping.set()
        log.warning("received %s: draining and stopping", signal.Signals(signum).name)
        health.stopping()
        pipeline.stop()

    def tick() -> None:
        health.tick()
        json_out.tick()

    server: Optional[MetricsServer] = None
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if metrics_port is not None:
            server = start_metrics_server(pipeline.metrics, pipeline.events, metrics_port,
                                          metrics_host)
            log.info("Prometheus metrics on %s", server.url)
        snapshot = pipeline.run(on_tick=tick)
    except BaseException as exc:
        snapshot = json_out.final(error=f"{type(exc).__name__}: {exc}")
        if snapshot["counts"]["captured"]:   # a failed start stays one error line
            _report(format_summary(snapshot, "edge-resnet run (failed)"), stream)
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        pipeline.backend.close()
        if server is not None:
            server.close()
    snapshot = json_out.final(stopped_by_signal=stopping.is_set())
    _report(format_summary(snapshot, "edge-resnet run"), stream)
    return snapshot


def _report(text: str, stream: Any) -> None:
    """The summary: to ``stream`` when given, else through the log (timestamp on each line)."""
    if stream is not None:
        print(text, file=stream, flush=True)
        return
    for line in text.splitlines():
        log.info("%s", line)


class _MetricsJson:
    """``--metrics-json``: the snapshot plus who produced it, rewritten atomically every
    ``interval_s`` while running and once at the end (so a crash leaves a recent one)."""

    def __init__(self, pipeline: Pipeline, path: "str | Path | None", interval_s: float) -> None:
        self.pipeline = pipeline
        self.path = path
        self.interval_s = interval_s
        self._last = time.monotonic()

    def snapshot(self, **extra: Any) -> Dict[str, Any]:
        ev = self.pipeline.events
        snap = self.pipeline.metrics.snapshot()
        snap.update({"run_id": ev.run_id, "camera_id": ev.camera_id, "source": ev.source,
                     "model": ev.model.to_dict(), "written_at": time.time()}, **extra)
        return snap

    def tick(self) -> None:
        if self.path is None or self.interval_s <= 0 \
                or time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        atomic_write_json(self.path, self.snapshot(final=False))

    def final(self, **extra: Any) -> Dict[str, Any]:
        snap = self.snapshot(final=True, **extra)
        if self.path is not None:
            atomic_write_json(self.path, snap)
        return snap
