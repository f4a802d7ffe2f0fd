"""Pipeline metrics: counters, per-stage latency percentiles, FPS; thread-safe, bounded memory.

Each stage records its latency in milliseconds into a fixed-size window (the newest
``window`` samples), so a service running for weeks keeps flat memory while the percentiles
still describe recent behaviour; counters are exact over the whole run. Percentiles are
reported trtexec-style (p50/p90/p99). Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["PipelineMetrics", "percentiles", "format_line", "format_summary"]

log = logging.getLogger(__name__)

COUNTERS = ("captured", "dropped", "processed", "corrupt", "repeated", "outages", "reconnects",
            "batches")
STAGES = ("capture", "preprocess", "queue", "infer", "postprocess", "output", "end_to_end")
# Histogram bucket bounds in ms (Prometheus-style cumulative counts over the whole run).
BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


def percentiles(samples: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99/mean/max of ``samples`` (empty input gives zeros, never NaN)."""
    if len(samples) == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0, "count": 0}
    arr = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "mean": float(arr.mean()), "max": float(arr.max()), "count": int(arr.size)}


class PipelineMetrics:
    """Counters and latency windows shared by the pipeline's threads."""

    def __init__(self, window: int = 4096) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {name: 0 for name in COUNTERS}
        self._lat: Dict[str, Deque[float]] = {name: deque(maxlen=window) for name in STAGES}
        self._outage_s = 0.0
        self._start = time.perf_counter()
        self._first_result: Optional[float] = None
        self._last_result: Optional[float] = None
        self._recent: Deque[float] = deque(maxlen=window)
        self._hist: Dict[str, List[int]] = {}
        self._hist_sum: Dict[str, float] = {}
        self.source_up = True
        self._down_since: Optional[float] = None   # perf_counter of the last frame before
        self._last_frame: Optional[float] = None   # perf_counter of the newest new frame

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def observe(self, stage: str, ms: float) -> None:
        with self._lock:
            self._lat.setdefault(stage, deque(maxlen=4096)).append(ms)
            self._bucket(stage, ms)

    def _bucket(self, stage: str, ms: float) -> None:
        counts = self._hist.setdefault(stage, [0] * (len(BUCKETS_MS) + 1))
        counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self._hist_sum[stage] = self._hist_sum.get(stage, 0.0) + ms

    def frame_arrived(self, t: float) -> None:
        """A new (not repeated) frame arrived at perf_counter time ``t``: the frame age clock."""
        with self._lock:
            self._last_frame = t

    def source_down(self, last_frame: float) -> None:
        """The source stopped delivering; ``last_frame`` is when its last new frame came."""
        with self._lock:
            self.source_up = False
            self._down_since = last_frame
            self._counts["outages"] += 1

    def source_back(self, outage_s: float) -> None:
        with self._lock:
            self.source_up = True
            self._down_since = None
            self._outage_s += outage_s

    def histograms(self) -> Dict[str, Tuple[List[int], float]]:
        """Per stage: counts per bucket of :data:`BUCKETS_MS` (+inf last) and the sum in ms."""
        with self._lock:
            return {k: (list(v), self._hist_sum[k]) for k, v in self._hist.items()}

    def result(self, t_capture: float) -> None:
        """One frame finished: count it and record capture-to-result latency."""
        now = time.perf_counter()
        with self._lock:
            self._counts["processed"] += 1
            self._lat["end_to_end"].append((now - t_capture) * 1000.0)
            self._bucket("end_to_end", (now - t_capture) * 1000.0)
            if self._first_result is None:
                self._first_result = now
            self._last_result = now
            self._recent.append(now)

    def snapshot_fps(self) -> float:
        """Frames per second over the last ~2 s of results (cheap; drawn on video frames)."""
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            last = self._recent[-1]
            window = [t for t in list(self._recent)[-120:] if last - t <= 2.0]
        span = window[-1] - window[0]
        return (len(window) - 1) / span if span > 0 else 0.0

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def snapshot(self) -> Dict[str, Any]:
        """Everything as plain data (JSON-ready): counts, fps, per-stage percentiles in ms."""
        now = time.perf_counter()
        with self._lock:
            counts = dict(self._counts)
            lat = {name: list(values) for name, values in self._lat.items()}
            first, last, outage = self._first_result, self._last_result, self._outage_s
            recent = [t for t in self._recent if now - t <= 5.0]
            down_since, last_frame, up = self._down_since, self._last_frame, self.source_up
        if down_since is not None:   # an outage in progress counts up to now
            outage += max(0.0, now - down_since)
        processed = counts["processed"]
        span = (last - first) if first is not None and last is not None else 0.0
        fps = (processed - 1) / span if processed > 1 and span > 0 else 0.0
        live_span = span - min(outage, span)
        fps_live = (processed - 1) / live_span if processed > 1 and live_span > 0 else 0.0
        recent_fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and \
            recent[-1] > recent[0] else 0.0
        return {
            "elapsed_s": now - self._start,
            "fps": fps,
            "fps_live": fps_live,
            "recent_fps": recent_fps,
            "counts": counts,
            "outage_s": outage,
            "source_up": up,
            "frame_age_s": (now - last_frame) if last_frame is not None else None,
            "latency_ms": {name: percentiles(values) for name, values in lat.items() if values},
        }


def format_summary(snap: Dict[str, Any], title: str = "pipeline") -> str:
    """Human-readable multi-line summary of :meth:`PipelineMetrics.snapshot`."""
    c = snap["counts"]
    lines: List[str] = [
        f"{title}: {snap['fps']:.1f} FPS overall, {snap['fps_live']:.1f} FPS while the source was"
        f" live, over {snap['elapsed_s']:.1f}s | captured {c['captured']}"
        f" processed {c['processed']} dropped {c['dropped']} corrupt {c['corrupt']}"
        f" repeated {c['repeated']} outages {c['outages']} reconnects {c['reconnects']}"
        f" (outage {snap['outage_s']:.1f}s)",
        f"  {'stage':<12}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'n':>8}",
    ]
    for stage, p in snap["latency_ms"].items():
        lines.append(f"  {stage:<12}{p['p50']:9.2f}{p['p90']:9.2f}{p['p99']:9.2f}"
                     f"{p['mean']:9.2f}{p['count']:8d}")
    return "\n".join(lines)


def format_line(snap: Dict[str, Any]) -> str:
    """One-line periodic status: recent FPS, counts, end-to-end and inference latency."""
    c = snap["counts"]
    lat = snap["latency_ms"]
    e2e, inf = lat.get("end_to_end", percentiles([])), lat.get("infer", percentiles([]))
    return (f"{snap['recent_fps']:.1f} FPS | captured {c['captured']} processed {c['processed']} "
            f"dropped {c['dropped']} corrupt {c['corrupt']} reconnects {c['reconnects']} | "
            f"latency p50/p99 {e2e['p50']:.1f}/{e2e['p99']:.1f} ms (infer {inf['p50']:.1f} ms)")
