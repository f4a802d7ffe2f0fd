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
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edge_resnet.backends.base import Backend, load_backend
from edge_resnet.io_utils import atomic_write_json
from edge_resnet.runtime.gallery import load_gallery_for
from edge_resnet.runtime.metrics import format_summary
from edge_resnet.runtime.outputs import Output, close_all, create_output
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
from edge_resnet.runtime.sources import SourceOptions, create_source

__all__ = ["build_pipeline", "run_until_signal"]

log = logging.getLogger(__name__)


def build_pipeline(model: "str | Path", source: str, outputs: Sequence[str] = ("-",), *,
                   backend: str = "onnxruntime", threads: int = 0,
                   source_options: Optional[SourceOptions] = None,
                   config: Optional[PipelineConfig] = None,
                   gallery: "str | Path | None" = None,
                   backend_options: Optional[Dict[str, Any]] = None) -> Pipeline:
    """Load the backend, parse the source and output URIs, and wire a :class:`Pipeline`.

    ``backend_options`` go to the backend besides ``threads`` (e.g. pytorch's ``device``).
    Nothing runs until :meth:`Pipeline.run` / :meth:`Pipeline.start`.
    """
    src = create_source(source, source_options)
    engine: Backend = load_backend(backend, model, threads=threads, **(backend_options or {}))
    outs: List[Output] = []
    try:
        gal = load_gallery_for(gallery, engine.spec) if gallery is not None else None
        fps = source_options.fps if source_options else None
        for uri in outputs:
            outs.append(create_output(uri, source, fps))
        return Pipeline(engine, src, outs, config, gallery=gal)
    except BaseException:
        close_all(outs)
        engine.close()
        raise


def run_until_signal(pipeline: Pipeline, metrics_json: "str | Path | None" = None,
                     stream: Any = None) -> Dict[str, Any]:
    """Run ``pipeline`` in the calling (main) thread, stopping gracefully on SIGINT/SIGTERM.

    Returns the final metrics snapshot, also printed to ``stream`` (stderr) and written to
    ``metrics_json`` when given.
    """
    stream = stream or sys.stderr
    stopping = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            os._exit(130)  # second signal: the user insists
        stopping.set()
        log.warning("received %s: draining and stopping", signal.Signals(signum).name)
        pipeline.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        snapshot = pipeline.run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        pipeline.backend.close()
    snapshot["stopped_by_signal"] = stopping.is_set()
    print(format_summary(snapshot, "edge-resnet run"), file=stream, flush=True)
    if metrics_json is not None:
        atomic_write_json(metrics_json, snapshot)
    return snapshot
