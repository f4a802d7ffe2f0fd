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
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional

import numpy as np

from edge_resnet.core import DataError, EdgeResnetError, SourceError
from edge_resnet.runtime.telemetry import PipelineMetrics
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
    """One captured frame: BGR pixels, its index and its capture times."""

    image: np.ndarray
    index: int
    timestamp: float         # wall clock (time.time) at capture
    t_capture: float         # perf_counter at capture (latencies)
    monotonic: float = 0.0   # time.monotonic at capture (event ordering across a run)
    path: Optional[str] = None  # the image file (image-folder sources), for review


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


StatusCallback = Callable[[str, Dict[str, Any]], None]


def frame_hash(image: np.ndarray) -> int:
    """A cheap fingerprint of a frame (CRC32 of every 8th pixel of every 8th row, ~0.05 ms
    at 1080p): equal for the byte-identical frames a stalled CSI/RTSP stack keeps returning,
    different for any live sensor (noise alone changes it)."""
    return zlib.crc32(np.ascontiguousarray(image[::8, ::8]).tobytes())


class CaptureThread(threading.Thread):
    """Runs ``source`` until it ends, fails for good, or :meth:`stop` is called.

    Live sources: a frame identical to the previous one is not new (counted ``repeated``, never
    delivered); no new frame for ``freeze_timeout`` seconds is a frozen source, handled like a
    lost one. An outage publishes ``source_down`` (with when the last frame arrived) and, at the
    first *new* frame after it, ``source_up`` with the real outage length (last good frame →
    first new frame). While backing off, reachability is probed cheaply (TCP connect, device
    node) every ``probe_interval`` s, so a source that comes back is reopened at once.
    """

    def __init__(self, source: VideoSource, metrics: PipelineMetrics, *, capacity: int = 4,
                 backoff: Optional[Backoff] = None, max_frames: Optional[int] = None,
                 stop_event: Optional[threading.Event] = None, niceness: int = 0,
                 freeze_timeout: float = 0.0, probe_interval: float = 0.2,
                 on_status: Optional[StatusCallback] = None) -> None:
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
        self.freeze_timeout = freeze_timeout if source.live else 0.0
        self.probe_interval = probe_interval
        self.on_status = on_status
        self._index = 0
        self._passes = 0
        self._pace_start = 0.0
        self._last_hash: Optional[int] = None
        self._last_new = time.perf_counter()        # when the newest new frame arrived
        self._last_new_wall: Optional[float] = None
        self._down_since: Optional[float] = None    # set during an outage: last good frame
        self._attempts = 0
        self._reopened = 0.0

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

    def _status(self, kind: str, fields: Dict[str, Any]) -> None:
        if self.on_status is not None:
            self.on_status(kind, fields)

    def _loop(self) -> None:
        self._pace_start = time.monotonic()
        self._last_new = time.perf_counter()
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
            if not self._is_new(image):
                if self.freeze_timeout and time.perf_counter() - max(
                        self._last_new, self._reopened) >= self.freeze_timeout:
                    if not self._reconnect("frozen"):
                        return
                continue
            self.metrics.observe("capture", (time.perf_counter() - t0) * 1000.0)
            self._pace()
            frame = Frame(image, self._index, time.time(), time.perf_counter(), time.monotonic(),
                          getattr(self.source, "last_path", None))
            self._arrived(frame)
            self._index += 1
            if not self.channel.put(frame, self.stop_event):
                return
            self.metrics.count("captured")

    def _is_new(self, image: np.ndarray) -> bool:
        """False for a live frame byte-identical to the previous one (a stalled stack)."""
        if not self.freeze_timeout:
            return True
        digest = frame_hash(image)
        if digest == self._last_hash:
            self.metrics.count("repeated")
            self.stop_event.wait(0.005)   # a stack that returns at once must not spin
            return False
        self._last_hash = digest
        return True

    def _arrived(self, frame: Frame) -> None:
        """Book a new frame; the first one after an outage ends it (``source_up``)."""
        if self._down_since is not None:
            outage = frame.t_capture - self._down_since
            self.metrics.source_back(outage)
            self._status("source_up", {"outage_s": round(outage, 3),
                                       "reconnect_attempts": self._attempts})
            log.warning("source %s back: first new frame %.2fs after the last one",
                        self.source.describe(), outage)
            self._down_since, self._attempts = None, 0
        self._last_new, self._last_new_wall = frame.t_capture, frame.timestamp
        self.metrics.frame_arrived(frame.t_capture)

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
            if count and position is not None and position < count - 1 and src.skip():
                log.warning("%s: decoding failed at frame %d of %d (corrupt); seeking past it",
                            src.describe(), position, count)
                return True
            self._account_lost(count, position)
            if self.source.options.loop == -1 or self._passes < self.source.options.loop:
                self._passes += 1
                self._pace_start = time.monotonic() - self._index / (src.frame_rate or 30.0)
                return src.rewind()
            return False
        return self._reconnect("no frame")

    def _account_lost(self, count: Optional[int], position: Optional[int]) -> None:
        """End of a file pass that failed early or skipped: every announced frame that was not
        handed out is lost (counted as ``corrupt``), and no result is ever made up for it."""
        delivered = getattr(self.source, "delivered", None)
        skipped = getattr(self.source, "skipped", 0)
        if not count or position is None or delivered is None:
            return
        if position >= count - 1 and not skipped:
            return   # a normal end (the announced count may be an estimate)
        lost = max(0, count - delivered)
        if lost:
            self.metrics.count("corrupt", lost)
            log.warning("%s: %d of %d frames could not be decoded (truncated or damaged file; "
                        "decoding stopped after frame %d); no results were made up for them",
                        self.source.describe(), lost, count,
                        getattr(self.source, "last_decoded", position - 1))

    def _went_down(self, reason: str) -> None:
        """Open an outage (once): event + metrics, measured from the last new frame."""
        if self._down_since is not None:
            return
        self._down_since = self._last_new
        age = time.perf_counter() - self._last_new
        self.metrics.source_down(self._last_new)
        self._status("source_down", {"reason": reason, "last_frame_timestamp": (
            round(self._last_new_wall, 6) if self._last_new_wall is not None else None),
            "last_frame_age_s": round(age, 3)})
        log.warning("source %s down (%s): last new frame %.2fs ago; reconnecting",
                    self.source.describe(), reason, age)

    def _reconnect(self, reason: str) -> bool:
        """Close, back off (probing) and reopen until it works, the attempts run out
        (:class:`SourceError`) or a stop; the outage ends at the first new frame."""
        src = self.source
        self._went_down(reason)
        src.close()
        while not self.stop_event.is_set():
            self._attempts += 1
            attempt = self._attempts
            if self.backoff.attempts is not None and attempt > self.backoff.attempts:
                raise SourceError(f"source {src.describe()} did not come back after "
                                  f"{self.backoff.attempts} reconnect attempts")
            delay = self.backoff.delay(attempt)
            log.info("reconnect attempt %d to %s within %.1fs", attempt, src.describe(), delay)
            if not self._wait_or_probe(delay):
                break
            try:
                src.open()
            except EdgeResnetError as exc:
                log.warning("reconnect attempt %d to %s failed: %s", attempt, src.describe(), exc)
                continue
            self.metrics.count("reconnects")
            self._reopened = time.perf_counter()   # the freeze clock restarts here
            log.info("source %s reopened (attempt %d)", src.describe(), attempt)
            return True
        return False

    def _wait_or_probe(self, delay: float) -> bool:
        """Sleep ``delay`` s, but wake up early when a probe sees the source come back
        (unreachable → reachable). False when stopping."""
        deadline = time.monotonic() + delay
        reachable = self.source.probe()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self.stop_event.wait(min(self.probe_interval, remaining)):
                return False
            if reachable is None:
                continue   # no cheap probe for this source: plain backoff
            was, reachable = reachable, self.source.probe()
            if reachable and not was:
                log.info("source %s reachable again; reopening now", self.source.describe())
                return True
