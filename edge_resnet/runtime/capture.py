"""The capture thread: reads a source, keeps latency flat, survives outages.

Live sources (cameras, streams, and files under ``--realtime``) hand over only the newest frame:
an unconsumed frame is overwritten and counted as dropped, so a slow consumer never sees stale
frames piling up. Files hand over every frame through a bounded queue (back-pressure instead of
drops). A live source that fails is reopened with exponential backoff while the pipeline keeps
running; the end of a file ends the run.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Optional

import numpy as np

from edge_resnet.core import DataError, EdgeResnetError, SourceError
from edge_resnet.runtime.metrics import PipelineMetrics
from edge_resnet.runtime.sources import VideoSource

__all__ = ["Backoff", "CaptureThread", "Frame", "FrameChannel", "lower_thread_priority"]

log = logging.getLogger(__name__)


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by ``niceness`` (Linux; a no-op elsewhere).

    On a small CPU the inference threads use every core; a capture or preprocessing thread
    that preempts one of them stalls the whole parallel layer at its next barrier. At a lower
    priority those threads run in the gaps instead (the bounded queues keep them ahead).
    """
    if niceness <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid)
                                                 + niceness))
    except OSError as exc:  # not permitted in some containers: keep the default priority
        log.debug("cannot lower thread priority: %s", exc)


@dataclass
class Frame:
    """One captured frame: BGR pixels, its index, wall-clock and monotonic capture times."""

    image: np.ndarray
    index: int
    timestamp: float
    t_capture: float


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial`` doubling up to ``maximum``; ``attempts`` None = forever."""

    initial: float = 0.5
    maximum: float = 10.0
    attempts: Optional[int] = None

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * (2 ** max(0, attempt - 1))))


class FrameChannel:
    """Hand-over between capture and the pipeline: newest-only (live) or bounded FIFO (files)."""

    def __init__(self, latest_only: bool, capacity: int, metrics: PipelineMetrics) -> None:
        self.latest_only = latest_only
        self.capacity = 1 if latest_only else max(1, capacity)
        self._items: Deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._metrics = metrics

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Deliver a frame; False when stopping. Live: replaces (drops) an unconsumed frame."""
        with self._cond:
            if self.latest_only:
                if self._items:
                    self._items.popleft()
                    self._metrics.count("dropped")
                self._items.append(frame)
                self._cond.notify()
                return True
            while len(self._items) >= self.capacity:
                if stop.is_set():
                    return False
                self._cond.wait(0.05)
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Optional[Frame]:
        """Next frame, or None on timeout or when closed and empty (check :attr:`finished`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class CaptureThread(threading.Thread):
    """Runs ``source`` until it ends, fails for good, or :meth:`stop` is called."""

    def __init__(self, source: VideoSource, metrics: PipelineMetrics, *, capacity: int = 4,
                 backoff: Optional[Backoff] = None, max_frames: Optional[int] = None,
                 stop_event: Optional[threading.Event] = None, niceness: int = 0) -> None:
        super().__init__(name="edge-resnet-capture", daemon=True)
        self.source = source
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.max_frames = max_frames
        self.paced = source.options.realtime and not source.live
        self.channel = FrameChannel(source.live or self.paced, capacity, metrics)
        self.stop_event = stop_event or threading.Event()
        self.error: Optional[BaseException] = None
        self.niceness = niceness
        self._index = 0
        self._passes = 0
        self._pace_start = 0.0

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        lower_thread_priority(self.niceness)
        try:
            self._loop()
        except BaseException as exc:  # surfaced by the pipeline in the caller's thread
            self.error = exc
            log.error("capture from %s failed: %s", self.source.describe(), exc)
        finally:
            self.source.close()
            self.channel.close()

    def _loop(self) -> None:
        self._pace_start = time.monotonic()
        while not self.stop_event.is_set():
            if self.max_frames is not None and self._index >= self.max_frames:
                return
            t0 = time.perf_counter()
            try:
                image = self.source.read()
            except DataError as exc:
                self.metrics.count("corrupt")
                log.warning("skipping unreadable frame from %s: %s", self.source.describe(), exc)
                continue
            if image is None:
                if not self._handle_end():
                    return
                continue
            self.metrics.observe("capture", (time.perf_counter() - t0) * 1000.0)
            self._pace()
            frame = Frame(image, self._index, time.time(), time.perf_counter())
            self._index += 1
            if not self.channel.put(frame, self.stop_event):
                return
            self.metrics.count("captured")

    def _pace(self) -> None:
        """--realtime on files: release frame i at i / fps seconds after the start."""
        if not self.paced:
            return
        fps = self.source.frame_rate or 30.0
        due = self._pace_start + self._index / fps
        delay = due - time.monotonic()
        if delay > 0:
            self.stop_event.wait(delay)

    def _handle_end(self) -> bool:
        """No frame: loop, finish, or reconnect. Returns False when capture should end."""
        src = self.source
        if not src.live:
            count = src.frame_count
            position = getattr(src, "position", None)
            if count and position is not None and position < count - 1:
                self.metrics.count("corrupt")
                if src.skip():
                    log.warning("%s: frame %d of %d cannot be decoded (corrupt); skipped",
                                src.describe(), position, count)
                    return True
                log.warning("%s ended at frame %d of %d announced: truncated or corrupt file",
                            src.describe(), position, count)
                self.metrics.count("corrupt", max(0, count - position - 1))
            if self.source.options.loop == -1 or self._passes < self.source.options.loop:
                self._passes += 1
                self._pace_start = time.monotonic() - self._index / (src.frame_rate or 30.0)
                return src.rewind()
            return False
        return self._reconnect()

    def _reconnect(self) -> bool:
        src = self.source
        outage_start = time.monotonic()
        log.warning("source %s lost (no frame); reconnecting", src.describe())
        src.close()
        attempt = 0
        while not self.stop_event.is_set():
            attempt += 1
            if self.backoff.attempts is not None and attempt > self.backoff.attempts:
                raise SourceError(f"source {src.describe()} did not come back after "
                                  f"{self.backoff.attempts} reconnect attempts")
            delay = self.backoff.delay(attempt)
            log.info("reconnect attempt %d to %s in %.1fs", attempt, src.describe(), delay)
            if self.stop_event.wait(delay):
                break
            try:
                src.open()
            except EdgeResnetError as exc:
                log.warning("reconnect attempt %d to %s failed: %s", attempt, src.describe(), exc)
                continue
            outage = time.monotonic() - outage_start
            self.metrics.count("reconnects")
            self.metrics.add_outage(outage)
            log.warning("source %s back after %.1fs outage", src.describe(), outage)
            return True
        return False
