"""Prometheus metrics of a running pipeline (``--metrics-port``), via ``prometheus_client``.

A custom collector reads :class:`PipelineMetrics` at scrape time, so nothing is counted twice:
frames by state (captured, processed, dropped, corrupt, repeated), reconnects, outages and
their seconds, FPS (recent and live-only), source up/down, frame age, per-stage latency
histograms, and an info metric naming the run, camera, source (credentials redacted) and
model name/version/sha256. The server binds 127.0.0.1 unless told otherwise.
Device side: Python 3.8; ``prometheus_client`` is imported only when a port is asked for.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from edge_resnet.core import DependencyError, InputError
from edge_resnet.runtime.events import EventLog
from edge_resnet.runtime.telemetry import BUCKETS_MS, PipelineMetrics

__all__ = ["MetricsServer", "start_metrics_server"]


class _Collector:
    """Yields the metric families of one pipeline at each scrape."""

    def __init__(self, metrics: PipelineMetrics, events: EventLog) -> None:
        self.metrics = metrics
        self.events = events

    def describe(self) -> list:
        return []   # families vary with the stages seen; skip the registry's dry run

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily, InfoMetricFamily)

        snap = self.metrics.snapshot()
        counts = snap["counts"]
        ev = self.events
        info = InfoMetricFamily("edge_resnet_run", "the run, its camera, source and model")
        info.add_metric([], {"run_id": ev.run_id, "camera_id": ev.camera_id or "",
                             "source": ev.source, "model_name": ev.model.name,
                             "model_version": ev.model.version or "",
                             "model_sha256": ev.model.sha256})
        yield info
        frames = CounterMetricFamily("edge_resnet_frames", "frames by state", labels=["state"])
        for state in ("captured", "processed", "dropped", "corrupt", "repeated"):
            frames.add_metric([state], counts.get(state, 0))
        yield frames
        yield CounterMetricFamily("edge_resnet_reconnects", "successful source reopenings",
                                  value=counts.get("reconnects", 0))
        yield CounterMetricFamily("edge_resnet_outages", "source outages (lost or frozen)",
                                  value=counts.get("outages", 0))
        yield GaugeMetricFamily("edge_resnet_outage_seconds",
                                "seconds without new frames, summed (the current one included)",
                                value=snap["outage_s"])
        yield GaugeMetricFamily("edge_resnet_source_up", "1 while the source delivers frames",
                                value=1.0 if snap["source_up"] else 0.0)
        age = snap["frame_age_s"]
        yield GaugeMetricFamily("edge_resnet_frame_age_seconds",
                                "seconds since the newest new frame arrived (NaN before one)",
                                value=float("nan") if age is None else age)
        yield GaugeMetricFamily("edge_resnet_fps", "results per second over the last 5 s",
                                value=snap["recent_fps"])
        yield GaugeMetricFamily("edge_resnet_fps_live",
                                "results per second of live-source time over the run",
                                value=snap["fps_live"])
        yield self._histograms(HistogramMetricFamily)

    def _histograms(self, family: Any) -> Any:
        hist = family("edge_resnet_stage_latency_seconds", "per-stage latency",
                      labels=["stage"])
        for stage, (counts, total_ms) in sorted(self.metrics.histograms().items()):
            buckets, running = [], 0
            for bound, n in zip(list(BUCKETS_MS) + [float("inf")], counts):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound / 1000.0),
                                running))
            hist.add_metric([stage], buckets, sum_value=total_ms / 1000.0)
        return hist


class MetricsServer:
    """A running exporter: :attr:`port` (the real one when 0 was asked), :meth:`close`."""

    def __init__(self, server: Any, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = int(server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_metrics_server(metrics: PipelineMetrics, events: EventLog, port: int,
                         host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) in a daemon thread."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.process_collector import ProcessCollector
    except ImportError as exc:
        raise DependencyError("metrics_port needs prometheus_client: "
                              "`pip install prometheus_client`") from exc
    if not 0 <= port <= 65535:
        raise InputError(f"metrics_port={port}: must be 0-65535")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, events))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    try:
        started: Optional[Any] = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InputError(f"metrics_port={port} on {host}: {exc.strerror or exc} "
                         "(choose a free port)") from exc
    if not isinstance(started, tuple):
        raise DependencyError("prometheus_client is too old (start_http_server returned no "
                              "server): `pip install 'prometheus_client>=0.17'`")
    server, thread = started
    return MetricsServer(server, thread, host)

