"""The streaming pipeline: capture → preprocess → batch → infer → postprocess → outputs.

Each stage runs in its own thread joined by bounded queues, so decoding and preprocessing of
frame n+1 overlap inference of frame n while memory stays flat (at most a few frames in flight).
Batches form in the preprocessing thread from what is ready: up to ``max_batch`` frames, waiting
at most ``max_wait_ms`` for more, each frame preprocessed straight into a backend
``input_buffer`` slot (pinned memory on GPU backends; no per-batch stack or copy). The inference
thread activates the backend (CUDA contexts are thread-bound), keeps up to two batches in flight
with ``submit``/``wait`` and hands each buffer slot back once its batch is done. A stop request (SIGINT/SIGTERM in the CLI) stops capture and drains every frame already
captured through the outputs, so counts add up: processed + dropped = captured.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from edge_resnet.backends.base import MAX_IN_FLIGHT, Backend, Handle, InferenceOutput
from edge_resnet.core import EdgeResnetError, InputError, ModelError
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.capture import (Backoff, CaptureThread, Frame, FrameChannel,
                                         lower_thread_priority)
from edge_resnet.runtime.gallery import Gallery, match_threshold
from edge_resnet.runtime.telemetry import PipelineMetrics, format_line
from edge_resnet.runtime.events import EventLog, ModelInfo
from edge_resnet.runtime.outputs import Output, VideoOutput, close_all, result_fields
from edge_resnet.runtime.postprocess import Postprocessor
from edge_resnet.runtime.sources import VideoSource

__all__ = ["Pipeline", "PipelineConfig"]

log = logging.getLogger(__name__)

_END = object()
_EMPTY = np.zeros((0, 0, 3), dtype=np.uint8)


class _Batch:
    """Frames on their way to inference: preprocessed into ``buffer`` (input-buffer ``slot``),
    or staged for GPU preprocessing (``staged``)."""

    __slots__ = ("frames", "slot", "buffer", "staged", "deadline")

    def __init__(self, slot: Optional[int], buffer: np.ndarray, deadline: float) -> None:
        self.frames: List[Frame] = []
        self.slot, self.buffer, self.deadline = slot, buffer, deadline
        self.staged: List[Any] = []


@dataclass(frozen=True)
class PipelineConfig:
    """Tuning of the pipeline; defaults suit a single camera on a small device."""

    max_batch: int = 1
    max_wait_ms: float = 5.0
    queue_size: int = 4
    top_k: int = 5
    smoothing: int = 1
    threshold: float = 0.0
    match_threshold: Optional[float] = None
    stats_interval_s: float = 0.0
    max_frames: Optional[int] = None
    backoff: Backoff = field(default_factory=Backoff)
    # capture and preprocessing run this much "nicer" than inference (Linux), so they fill
    # the gaps of the inference threads instead of preempting them; 0 keeps equal priority
    io_niceness: int = 0
    # where frames are resized/normalised: "gpu" (into the backend's device input; needs a
    # backend with ``gpu_frames``, e.g. pytorch on CUDA), "cpu", or "auto" (gpu when it can)
    preprocess: str = "auto"
    # live sources: no new (non-identical) frame for this long is a frozen source, handled
    # as an outage (event, metric, reconnect); 0 turns the check off
    freeze_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise InputError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0 or self.queue_size < 1:
            raise InputError("max_wait_ms must be >= 0 and queue_size >= 1")
        if self.preprocess not in ("auto", "cpu", "gpu"):
            raise InputError(f"preprocess={self.preprocess}: must be auto, cpu or gpu")


class Pipeline:
    """Runs one source through one backend into several outputs. Use :meth:`run` or
    :meth:`start` / :meth:`stop` / :meth:`wait` / :meth:`close`."""

    def __init__(self, backend: Backend, source: VideoSource, outputs: List[Output],
                 config: Optional[PipelineConfig] = None, gallery: Optional[Gallery] = None,
                 metrics: Optional[PipelineMetrics] = None,
                 events: Optional[EventLog] = None) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.source = source
        self.outputs = outputs
        self.config = config or PipelineConfig()
        self.gallery = gallery
        if gallery is not None:
            gallery.check_model(self.spec)
        self.metrics = metrics or PipelineMetrics()
        self.events = events or EventLog(source.describe(),
                                         ModelInfo.from_file(backend.info.model_path))
        self.events.sinks = list(outputs)
        self.post = Postprocessor(self.spec.labels, self.config.top_k, self.config.smoothing,
                                  self.config.threshold)
        self._keep_frames = any(o.needs_frame for o in outputs)
        self._gpu_pre = _use_gpu_preprocessing(backend, self.config.preprocess)
        _check_batch_profile(backend, self.config.max_batch)
        self._free_slots: "queue.Queue[int]" = queue.Queue()
        self._q_pre: "queue.Queue[Any]" = queue.Queue(self.config.queue_size)
        self._q_post: "queue.Queue[Any]" = queue.Queue(self.config.queue_size)
        self._failed = threading.Event()
        self._done = threading.Event()
        self._error: Optional[BaseException] = None
        self.capture: Optional[CaptureThread] = None
        self._threads: List[threading.Thread] = []

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the source (raising :class:`SourceError` now if it cannot) and start threads."""
        self.source.open()
        for out in self.outputs:
            if isinstance(out, VideoOutput) and out.fps is None:
                out.fps = self.source.frame_rate or self.source.options.fps or 30.0
        self.capture = CaptureThread(self.source, self.metrics, capacity=self.config.queue_size,
                                     backoff=self.config.backoff,
                                     max_frames=self.config.max_frames,
                                     niceness=self.config.io_niceness,
                                     freeze_timeout=self.config.freeze_timeout_s,
                                     on_status=self._on_status)
        self.events.run_start({"backend": self.backend.info.name,
                               "precision": self.backend.info.precision,
                               "live": self.source.live})
        channel = self.capture.channel
        stages: List[Tuple[str, Callable[[], None]]] = [
            ("preprocess", lambda: self._preprocess_loop(channel)), ("infer", self._infer_loop),
            ("output", self._output_loop)]
        self._threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True,
                                          name=f"edge-resnet-{name}") for name, fn in stages]
        if self.config.stats_interval_s > 0:
            self._threads.append(threading.Thread(target=self._report_loop, daemon=True,
                                                  name="edge-resnet-stats"))
        self.capture.start()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Graceful stop: no new frames; frames already captured still reach the outputs."""
        if self.capture is not None:
            self.capture.stop()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once every stage has finished (the outputs are flushed)."""
        return self._done.wait(timeout)

    def close(self) -> Dict[str, Any]:
        """Join the threads, raise the first stage error, return the final metrics snapshot."""
        self.stop()
        for t in self._threads:
            t.join()
        if self.capture is not None:
            self.capture.join()
        error = self._error or (self.capture.error if self.capture is not None else None)
        if error is not None:
            raise error
        return self.metrics.snapshot()

    def run(self, on_tick: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Run to the end of the source (or a stop); returns the final metrics snapshot."""
        self.start()
        try:
            while not self.wait(0.2):
                if on_tick is not None:
                    on_tick()
        finally:
            snapshot = self.close()
        return snapshot

    # stages --------------------------------------------------------------------------------
    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            self._failed.set()
            self.stop()
            log.error("pipeline stage failed: %s", exc)
            self._put(self._q_pre, _END, force=True)
            self._put(self._q_post, _END, force=True)
        finally:
            if threading.current_thread().name == "edge-resnet-output":
                self._done.set()

    def _put(self, q: "queue.Queue[Any]", item: Any, force: bool = False) -> None:
        """Blocking put that gives up when another stage has failed (no dead-lock)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._failed.is_set():
                    if force:
                        _drain(q)
                        continue
                    raise _Aborted()

    def _preprocess_loop(self, channel: FrameChannel) -> None:
        """Form batches from the frames that are ready, preprocessing each into its row."""
        lower_thread_priority(self.config.io_niceness)
        batch: Optional[_Batch] = None
        while not self._failed.is_set():
            wait_s = 0.1 if batch is None else batch.deadline - time.perf_counter()
            frame = channel.get(timeout=max(0.0, wait_s))
            if frame is None:
                if batch is not None and (wait_s <= 0 or channel.finished):
                    self._put(self._q_pre, batch)
                    batch = None
                elif channel.finished:
                    break
                continue
            if batch is None:
                batch = self._new_batch()
            self._add_frame(batch, frame)
            if len(batch.frames) >= self.config.max_batch:
                self._put(self._q_pre, batch)
                batch = None
        self._put(self._q_pre, _END)

    def _new_batch(self) -> _Batch:
        deadline = time.perf_counter() + self.config.max_wait_ms / 1000.0
        if self._gpu_pre:
            return _Batch(None, _EMPTY, deadline)
        while True:  # a free input buffer: its previous batch is done
            try:
                slot = self._free_slots.get(timeout=0.1)
            except queue.Empty:
                if self._failed.is_set():
                    raise _Aborted()
                continue
            buffer = self.backend.input_buffer(self.config.max_batch, slot)
            return _Batch(slot, buffer, deadline)

    def _add_frame(self, batch: _Batch, frame: Frame) -> None:
        t0 = time.perf_counter()
        self.metrics.observe("queue", (t0 - frame.t_capture) * 1000.0)
        if self._gpu_pre:  # stage the pixels here; the inference thread runs the GPU part
            batch.staged.append(self.backend.stage_frame(frame.image))  # type: ignore[attr-defined]
            self.metrics.observe("stage", (time.perf_counter() - t0) * 1000.0)
        else:
            row = len(batch.frames)
            preprocess_batch([frame.image], self.spec, color_order="BGR",
                             out=batch.buffer[row:row + 1])
            self.metrics.observe("preprocess", (time.perf_counter() - t0) * 1000.0)
        if not self._keep_frames:
            frame.image = _EMPTY
        batch.frames.append(frame)

    def _infer_loop(self) -> None:
        """Activate the backend in this thread, run every batch, deactivate it again (when the
        pipeline activated it: a backend is left as the pipeline found it)."""
        backend = self.backend
        was_active = backend.active
        backend.activate()
        failed = False
        try:
            if not self._gpu_pre:  # buffers made here, where the backend is active
                # as many batches may wait as frames did before input buffers: a full
                # queue, two in flight and one being filled
                for slot in range(self.config.queue_size + MAX_IN_FLIGHT + 1):
                    backend.input_buffer(self.config.max_batch, slot)
                    self._free_slots.put(slot)
            self._run_batches()
        except BaseException:
            failed = True
            raise
        finally:
            if not was_active:
                try:
                    backend.deactivate()
                except EdgeResnetError as exc:
                    if not failed:
                        raise
                    log.warning("deactivating the backend after a failure: %s", exc)
        self._put(self._q_post, _END)

    def _run_batches(self) -> None:
        """Up to two batches in flight: batch n+1 is submitted before batch n is waited for,
        unless n is already done (CPU backends finish inside ``submit``), and a batch is
        waited for as soon as no newer one is queued, so a source slower than the backend gets
        no extra latency. ``infer`` is submit-to-result time; GPU backends' own timings go to
        ``preprocess`` (GPU preprocessing) and ``gpu_infer``."""
        pending: Deque[Tuple[_Batch, Handle, float]] = deque()
        while True:
            if pending and self._q_pre.empty():
                while pending:
                    self._finish_batch(*pending.popleft())
            item = self._q_pre.get()
            if item is _END:
                break
            t0 = time.perf_counter()
            if self._gpu_pre:
                handle = self.backend.submit_frames(  # type: ignore[attr-defined]
                    item.staged, color_order="BGR")
            else:
                handle = self.backend.submit(item.buffer[:len(item.frames)])
            pending.append((item, handle, t0))
            while pending and (len(pending) >= MAX_IN_FLIGHT or pending[-1][1].done):
                self._finish_batch(*pending.popleft())
        while pending:
            self._finish_batch(*pending.popleft())

    def _finish_batch(self, batch: _Batch, handle: Handle, t0: float) -> None:
        output = self.backend.wait(handle)
        self.metrics.observe("infer", (time.perf_counter() - t0) * 1000.0)
        if batch.slot is not None:
            self._free_slots.put(batch.slot)  # its buffer may be refilled now
        timings = getattr(self.backend, "last_timings", {})
        if self._gpu_pre and "preprocess" in timings:
            self.metrics.observe("preprocess", timings["preprocess"])
        if "infer" in timings:
            self.metrics.observe("gpu_infer", timings["infer"])
        self.metrics.count("batches")
        self._put(self._q_post, (batch.frames, output))

    def _output_loop(self) -> None:
        threshold = match_threshold(self.config.match_threshold, self.gallery) \
            if self.gallery is not None else 0.0
        try:
            while True:
                item = self._q_post.get()
                if item is _END:
                    break
                frames, output = item
                self._emit(frames, output, threshold)
        finally:
            try:
                self.events.emit("run_end", {"counts": self.metrics.counts(),
                                             "failed": self._failed.is_set()})
            finally:
                close_all(self.outputs)

    def _on_status(self, kind: str, fields: Dict[str, Any]) -> None:
        """Source status from the capture thread (``source_down`` / ``source_up``)."""
        self.events.emit(kind, fields)

    def _emit(self, frames: List[Frame], output: InferenceOutput, threshold: float) -> None:
        t0 = time.perf_counter()
        results = self.post(output.logits)
        if self.gallery is not None:
            if output.features is None:
                raise ModelError("a gallery needs a model exported with a features output (edge-resnet export --features)")
            for result, match in zip(results, self.gallery.match(output.features, threshold)):
                result.identity, result.similarity = match.identity, match.similarity
                result.candidate, result.match_threshold = match.best, match.threshold
        t1 = time.perf_counter()
        self.metrics.observe("postprocess", (t1 - t0) * 1000.0)
        fps = self.metrics.snapshot_fps()
        for frame, result in zip(frames, results):
            latency = (time.perf_counter() - frame.t_capture) * 1000.0
            self.events.emit("result", result_fields(frame, result, latency),
                             wall=frame.timestamp, monotonic=frame.monotonic)
            for out in self.outputs:
                out.write(frame, result, latency, fps)
            self.metrics.result(frame.t_capture)
        self.metrics.observe("output", (time.perf_counter() - t1) * 1000.0)

    def _report_loop(self) -> None:
        while not self._done.wait(self.config.stats_interval_s):
            log.info("%s", format_line(self.metrics.snapshot()))


def _use_gpu_preprocessing(backend: Backend, mode: str) -> bool:
    """Resolve ``--preprocess``: GPU when asked (refused if the backend cannot) or, for
    ``auto``, whenever the backend runs on a GPU and can take frames."""
    capable = bool(getattr(backend, "gpu_frames", False)) and all(
        hasattr(backend, name) for name in ("stage_frame", "submit_frames", "wait"))
    if mode == "gpu" and not capable:
        raise InputError("preprocess=gpu needs a backend on a CUDA GPU that takes frames "
                         "(e.g. backend=pytorch with device=cuda, and cuda-python installed); "
                         "use preprocess=cpu")
    return capable and mode != "cpu"


def _check_batch_profile(backend: Backend, max_batch: int) -> None:
    """The pipeline sends batches of 1 to ``max_batch`` frames: refuse a model whose
    optimization profile cannot take them now, not at the first full batch."""
    profile = getattr(backend, "batch_profile", None)
    if profile is None:
        return
    if max_batch > profile.max:
        raise InputError(f"max_batch={max_batch} exceeds what the model takes ({profile.name}: "
                         f"{profile.min}..{profile.max}); use max_batch={profile.max} or a model "
                         f"built for larger batches")
    if profile.min > 1:
        raise InputError(f"the model takes batches of {profile.min}..{profile.max} "
                         f"({profile.name}) but the pipeline also sends smaller ones (a quiet "
                         "source, the end of a file); rebuild it with `edge-resnet build --engine-batch 1:OPT:MAX`")


class _Aborted(Exception):
    """Internal: another stage failed; unwind this one quietly."""


def _drain(q: "queue.Queue[Any]") -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
