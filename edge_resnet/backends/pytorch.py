"""PyTorch backend: an edge-resnet checkpoint on CUDA (FP32/FP16, channels_last, CUDA graphs) or CPU

For Jetsons where PyTorch is installed and TensorRT is not wanted, and to run the GPU pipeline
end to end on machines without TensorRT. On CUDA, each batch size gets its own CUDA graph
(captured on first use, up to ``max_graphs`` sizes): one replay launches the whole network, so
batch-1 latency is the GPU's, not Python's. Inputs go through a pinned staging tensor; frames can
also be preprocessed on the GPU straight into the graph's static input
(:meth:`infer_frames`, used by the pipeline with ``--preprocess gpu``).

Device side (Python 3.8): torch is imported only when this backend is created.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from edge_resnet.backends.base import (MAX_IN_FLIGHT, BackendBase, BackendInfo, Handle,
                                       InferenceOutput)
from edge_resnet.backends.options import PyTorchOptions, merge_settings
from edge_resnet.core import BackendError, DependencyError, InputError, ModelError, ModelSpec

__all__ = ["PyTorchBackend"]

def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise DependencyError(
            "the pytorch backend needs PyTorch: `pip install 'edge-resnet[pytorch]'` (on a "
            "Jetson, NVIDIA's torch wheel for your JetPack)") from exc
    return torch


class _Graph:
    """One captured batch size: static input/output tensors and the CUDA graph between them."""

    def __init__(self, torch: Any, model: Any, shape: Tuple[int, ...], dtype: Any,
                 channels_last: bool, stream: Any) -> None:
        self.input = torch.zeros(shape, dtype=dtype, device=stream.device)
        self.host = torch.empty(shape, dtype=torch.float32, pin_memory=True)

        def forward() -> Any:
            x = self.input.contiguous(memory_format=torch.channels_last) \
                if channels_last else self.input
            return model(x)

        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up on the capture stream (cuDNN picks its kernels here)
                forward()
            stream.synchronize()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                self.output = forward()
        stream.synchronize()
        self.host_out = torch.empty(tuple(self.output.shape), dtype=torch.float32,
                                    pin_memory=True)


class _Ticket:
    """A submitted batch: its events (start, preprocessed, inferred, copied back) and where
    its logits land."""

    def __init__(self, torch: Any, slot: int) -> None:
        self.n, self.slot = 0, slot
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self.host: Any = None

    def query(self) -> bool:
        """True once the logits are back in host memory (``wait`` will not block)."""
        return bool(self.events[3].query())


class PyTorchBackend(BackendBase):
    """Runs an edge-resnet checkpoint (``export``/``finetune`` output) with PyTorch.

    ``options`` (:class:`PyTorchOptions`, or its fields as keywords): ``device``: ``auto``
    (CUDA when PyTorch sees a GPU), ``cuda``, ``cuda:N`` or ``cpu``. ``precision``: ``fp32`` or
    ``fp16`` (CUDA only; refused on CPU rather than silently run in FP32). ``cuda_graphs`` /
    ``channels_last`` apply on CUDA. ``threads`` sets CPU threads.

    On CUDA, :meth:`input_buffer` is pinned host memory, :meth:`submit` enqueues the copy in,
    the network (a CUDA graph) and the copy back on the backend's stream and returns at once;
    the batch's memory must stay untouched until :meth:`wait`. On CPU ``submit`` runs the batch.
    """

    def __init__(self, model_path: "str | Path", options: Optional[PyTorchOptions] = None,
                 spec: Optional[ModelSpec] = None, **settings: Any) -> None:
        self.options = opts = merge_settings(PyTorchOptions, options, settings)
        device, precision, threads = opts.device, opts.precision, opts.threads
        channels_last, cuda_graphs = opts.channels_last, opts.cuda_graphs
        path = Path(model_path)
        if path.suffix.lower() == ".onnx":
            raise ModelError(f"{path}: the pytorch backend runs checkpoints (.pt from `export` "
                             "or `finetune`); run ONNX files with backend=onnxruntime")
        torch = _import_torch()
        self._torch = torch
        self.device = self._pick_device(torch, device)
        if precision == "fp16" and self.device.type != "cuda":
            raise InputError("fp16 needs a CUDA device (device=cuda); PyTorch's CPU FP16 "
                             "convolutions are slower than FP32 and not what a GPU computes")
        if threads:
            torch.set_num_threads(threads)
        from edge_resnet.export.models import load_model  # torch-side module, loaded lazily

        loaded = load_model(str(path), trust_pickle=opts.trust_pickle)
        self.spec = spec if spec is not None else loaded.spec
        if self.spec.fused_preprocessing or self.spec.layout != "NCHW":
            raise ModelError("the pytorch backend runs the plain network: float NCHW input")
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        if self.device.type == "cuda" and precision == "fp32":
            # PyTorch lets cuDNN run FP32 convolutions as TF32 on Ampere+ GPUs (10-bit
            # mantissa); "fp32" means FP32, so say no (process-wide torch setting)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self._channels_last = channels_last and self.device.type == "cuda"
        model = loaded.model.eval().to(self.device, dtype=self._dtype)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model: Any = model
        self._use_graphs = cuda_graphs and self.device.type == "cuda"
        self._max_graphs = opts.max_graphs
        self._graphs: Dict[Tuple[int, int], _Graph] = {}
        self._in_flight: Set[int] = set()
        self._pinned: List[Any] = []  # pinned tensors behind input_buffer arrays
        self._tickets: Dict[int, _Ticket] = {}
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._gpu_pre: Any = None
        self._pre_lock = threading.Lock()
        self._gpu_frames: Optional[bool] = None
        self.last_timings: Dict[str, float] = {}
        res = self.spec.resolution
        self._input_shape = ["batch", 3, res, res]
        self._input_label = "input"
        self.info = BackendInfo(
            name="pytorch", model_path=str(path), precision=precision,
            device=self._device_name(torch),
            details={"torch": torch.__version__, "channels_last": self._channels_last,
                     "tf32": False if self.device.type == "cuda" and precision == "fp32" else None,
                     "cuda_graphs": self._use_graphs, "threads": threads})

    # setup -------------------------------------------------------------------------------
    @staticmethod
    def _pick_device(torch: Any, name: str) -> Any:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise DependencyError(
                    f"device={name}: PyTorch sees no CUDA device (CPU-only torch build, no "
                    "driver, or no GPU); use device=cpu or install a CUDA build of torch")
            index = device.index if device.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise InputError(f"CUDA device {index} does not exist; this machine has "
                                 f"{torch.cuda.device_count()}")
            device = torch.device("cuda", index)
        elif device.type != "cpu":
            raise InputError(f"the pytorch backend runs on cpu or cuda, not {name!r}")
        return device

    def _device_name(self, torch: Any) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return "cpu"

    def _graph(self, n: int, slot: int = 0) -> Optional[_Graph]:
        """The graph of batch size ``n`` (``slot`` 0 or 1: one per batch in flight)."""
        graph = self._graphs.get((n, slot))
        if graph is None and self._use_graphs and len(self._graphs) < self._max_graphs:
            res = self.spec.resolution
            graph = _Graph(self._torch, self._model, (n, 3, res, res), self._dtype,
                           self._channels_last, self._stream)
            self._graphs[(n, slot)] = graph
        return graph

    # lifecycle and buffers -----------------------------------------------------------------
    def _activate(self) -> None:
        """PyTorch's current CUDA device is per thread: make ours current in this one."""
        if self.device.type == "cuda":
            self._torch.cuda.set_device(self.device)

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _new_host_buffer(self, shape: Sequence[int], dtype: "np.dtype[Any]") -> np.ndarray:
        """Pinned on CUDA (the copy to the GPU is then asynchronous), plain numpy on CPU."""
        if self.device.type != "cuda":
            return super()._new_host_buffer(shape, dtype)
        torch = self._torch
        tensor = torch.from_numpy(np.empty(0, dtype=dtype)).new_empty(
            tuple(shape), pin_memory=True)
        self._pinned.append(tensor)
        array: np.ndarray = tensor.numpy()
        return array

    # inference ---------------------------------------------------------------------------
    def _forward(self, x: Any) -> Any:
        if self._channels_last:
            x = x.contiguous(memory_format=self._torch.channels_last)
        return self._model(x)

    def _run(self, batch: np.ndarray) -> InferenceOutput:
        torch = self._torch
        try:
            with torch.inference_mode():
                if self.device.type == "cpu":
                    logits = self._forward(torch.from_numpy(batch))
                    return InferenceOutput(logits=logits.float().numpy())
                if len(self._in_flight) < MAX_IN_FLIGHT:
                    return self._wait(self._submit(batch))
                with torch.cuda.stream(self._stream):  # both graphs busy: run eagerly
                    x = torch.from_numpy(batch).to(self.device, non_blocking=False)
                    out = self._forward(x.to(self._dtype)).float().cpu()  # waits: final
                return InferenceOutput(logits=out.numpy())
        except RuntimeError as exc:
            raise self._error(exc) from exc

    def _take_slot(self, n: int) -> "_Ticket":
        """A free in-flight slot (0 or 1) and its reusable ticket."""
        free = [s for s in range(MAX_IN_FLIGHT) if s not in self._in_flight]
        if not free:
            raise BackendError(f"{MAX_IN_FLIGHT} batches are already in flight; wait() for "
                               "one first")
        slot = free[0]
        ticket = self._tickets.get(slot) or self._tickets.setdefault(
            slot, _Ticket(self._torch, slot))  # one per slot, reused
        ticket.n = n
        self._in_flight.add(slot)
        return ticket

    def _submit(self, batch: np.ndarray) -> Handle:
        """CUDA: copy in (asynchronous from :meth:`input_buffer` memory), run, copy back."""
        if self.device.type != "cuda":
            return super()._submit(batch)
        torch = self._torch
        ticket = self._enqueue(len(batch), tuple(batch.shape),
                               lambda target: target.copy_(torch.from_numpy(batch),
                                                           non_blocking=True))
        return Handle(self, len(batch), ticket=ticket)

    def _enqueue(self, n: int, shape: Tuple[int, ...], fill: Callable[[Any], Any]) -> "_Ticket":
        """Take an in-flight slot and enqueue on the stream: ``fill`` writes the input into the
        CUDA graph's input (or a fresh tensor of ``shape``), then the network and the copy back.
        The slot is given back if enqueueing fails, so a failed batch never blocks the next."""
        torch = self._torch
        ticket = self._take_slot(n)
        try:
            with torch.inference_mode(), torch.cuda.stream(self._stream):
                graph = self._graph(n, ticket.slot)
                target = graph.input if graph is not None else torch.empty(
                    shape, dtype=self._dtype, device=self.device)
                ticket.events[0].record(self._stream)
                fill(target)
                ticket.events[1].record(self._stream)
                self._launch(graph, target, ticket)
        except RuntimeError as exc:
            self._in_flight.discard(ticket.slot)
            raise self._error(exc) from exc
        except BaseException:
            self._in_flight.discard(ticket.slot)
            raise
        return ticket

    def _launch(self, graph: Optional[_Graph], target: Any, ticket: "_Ticket") -> None:
        """Enqueue the network on ``target`` and the logits' copy into pinned memory."""
        torch = self._torch
        logits = graph.output if graph is not None else self._forward(target)
        if graph is not None:
            graph.graph.replay()
        ticket.events[2].record(self._stream)
        host = graph.host_out if graph is not None else torch.empty(
            tuple(logits.shape), dtype=torch.float32, pin_memory=True)
        host.copy_(logits, non_blocking=True)
        ticket.host = host
        ticket.events[3].record(self._stream)

    def _wait(self, handle: Handle) -> InferenceOutput:
        """Block until the batch is back; GPU-timed ``preprocess`` (the copy in, or the GPU
        preprocessing) and ``infer`` milliseconds go to ``last_timings``."""
        ticket: _Ticket = handle.ticket
        try:
            ticket.events[3].synchronize()
        finally:
            self._in_flight.discard(ticket.slot)
        self.last_timings = {"preprocess": ticket.events[0].elapsed_time(ticket.events[1]),
                             "infer": ticket.events[1].elapsed_time(ticket.events[2])}
        return InferenceOutput(logits=ticket.host.numpy().copy())

    def _error(self, exc: RuntimeError) -> BackendError:
        text = str(exc)
        if "out of memory" in text:
            return BackendError(f"PyTorch ran out of GPU memory: {text.splitlines()[0]}; use a "
                                "smaller max_batch or precision=fp16")
        return BackendError(f"PyTorch inference failed: {text.splitlines()[0]}")

    # GPU preprocessing -------------------------------------------------------------------
    @property
    def gpu_frames(self) -> bool:
        """True when :meth:`submit_frames` can preprocess on the GPU (CUDA + cuda-python)."""
        if self._gpu_frames is None:
            from edge_resnet.cuda import cuda_available
            self._gpu_frames = self.device.type == "cuda" and cuda_available()
        return self._gpu_frames

    def stage_frame(self, frame: np.ndarray) -> Any:
        """First half of GPU preprocessing, for another thread than :meth:`submit_frames`:
        copy the pixels the model needs into pinned memory. Pass the result to submit_frames."""
        return self._preprocessor().stage(frame)

    def submit_frames(self, frames: Sequence[Any], color_order: str = "BGR") -> Handle:
        """Enqueue GPU preprocessing of uint8 HxWx3 frames (or :meth:`stage_frame` results)
        straight into the network's input, the network and the logits' copy back; return at
        once. It counts towards the two batches in flight, like :meth:`submit`; pass the
        handle to :meth:`wait`."""
        self._check_open()
        if len(self._handles()) >= MAX_IN_FLIGHT:
            raise BackendError(f"{MAX_IN_FLIGHT} batches are already in flight; wait() for "
                               "one first")
        pre = self._preprocessor()
        self.activate()
        self.check_batch_size(len(frames))
        shape = (len(frames), 3, self.spec.resolution, self.spec.resolution)
        ticket = self._enqueue(len(frames), shape,
                               lambda target: pre.run(frames, int(target.data_ptr()), color_order))
        handle = Handle(self, len(frames), ticket=ticket)
        self._handles().append(handle)
        return handle

    def infer_frames(self, frames: Sequence[Any], color_order: str = "BGR") -> InferenceOutput:
        """:meth:`submit_frames` + :meth:`wait`: one batch, synchronously."""
        return self.wait(self.submit_frames(frames, color_order))

    def _preprocessor(self) -> Any:
        if not self.gpu_frames:
            raise BackendError("GPU preprocessing needs the pytorch backend on CUDA and "
                               "cuda-python; use preprocess=cpu")
        if self._closed:
            raise BackendError("backend is closed")
        with self._pre_lock:
            return self._make_preprocessor()

    def _make_preprocessor(self) -> Any:
        if self._gpu_pre is None:
            from edge_resnet.cuda import Stream, get_device
            from edge_resnet.cuda.preprocess import GpuPreprocessor

            device = get_device(self.device.index or 0)
            assert self._stream is not None  # gpu_frames checked that this is a CUDA backend
            out = "float16" if self._dtype == self._torch.float16 else "float32"
            self._gpu_pre = GpuPreprocessor(self.spec, out_dtype=out, device=device,
                                            stream=Stream.wrap(self._stream.cuda_stream, device))
        return self._gpu_pre

    def _release(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        if self._gpu_pre is not None:
            self._gpu_pre.close()
            self._gpu_pre = None
        self._graphs.clear()
        self._pinned.clear()
        self._model = None
