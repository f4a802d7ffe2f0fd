"""CUDA memory for backends and GPU preprocessing: device, streams, events, buffers, copies.

Everything here is a thin owner of one CUDA object with an explicit :meth:`close` (and a
best-effort release when garbage-collected), so a backend allocates its buffers once and reuses
them for every batch. Copies are asynchronous on a :class:`Stream`; the host side of an async copy
must be pinned (:class:`PinnedBuffer`) and stay untouched until an :class:`Event` recorded after
the copy has completed — :class:`edge_resnet.cuda.ring.InFlightRing` does that bookkeeping.

Every allocation and free is counted (:func:`allocation_stats`), so tests can prove that a
steady-state loop allocates nothing. Device side: Python 3.8, no torch; cuda-python is imported
on first use.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from edge_resnet.core import BackendError, InputError
from edge_resnet.cuda._bindings import NoCudaDeviceError, check, cuda_modules

__all__ = ["CudaDevice", "DeviceBuffer", "Event", "PinnedBuffer", "Stream", "allocation_stats",
           "copy_2d_async", "copy_async", "cuda_available", "get_device", "is_pinned", "mem_info"]

Shape = Union[int, Sequence[int]]

_stats_lock = threading.Lock()
_STATS: Dict[str, int] = {"device_allocs": 0, "device_frees": 0, "device_bytes": 0,
                          "host_allocs": 0, "host_frees": 0, "host_bytes": 0}
_thread = threading.local()
_devices: Dict[int, "CudaDevice"] = {}


def _count(kind: str, nbytes: int) -> None:
    with _stats_lock:
        if nbytes >= 0:
            _STATS[f"{kind}_allocs"] += 1
        else:
            _STATS[f"{kind}_frees"] += 1
        _STATS[f"{kind}_bytes"] += nbytes


def allocation_stats() -> Dict[str, int]:
    """Counts of device / pinned-host allocations and frees made through this module, and the
    bytes still live. Compare two snapshots to see whether code allocated in between."""
    with _stats_lock:
        return dict(_STATS)


@dataclass(frozen=True)
class CudaDevice:
    """One GPU: its index and the properties that change how memory should be used.

    ``integrated`` is true on Jetsons (the GPU shares DRAM with the CPU): there mapped pinned
    memory is read by kernels in place, so an H2D copy is pure overhead.
    """

    index: int
    name: str
    compute_capability: Tuple[int, int]
    total_memory: int
    integrated: bool
    can_map_host_memory: bool

    def make_current(self) -> None:
        """Make this device's primary context current in the calling thread (CUDA contexts
        are per thread; the runtime API and PyTorch share the primary context)."""
        current = getattr(_thread, "device", None)
        if current == self.index:
            return
        runtime, _, _ = cuda_modules()
        check(runtime.cudaSetDevice(self.index), "cudaSetDevice")
        check(runtime.cudaFree(0), "CUDA context initialisation")
        _thread.device = self.index


def cuda_available() -> bool:
    """True when cuda-python imports and at least one CUDA device answers (never raises)."""
    try:
        get_device(0)
    except Exception:
        return False
    return True


def get_device(index: int = 0) -> CudaDevice:
    """The device ``index`` (made current in this thread); :class:`NoCudaDeviceError` when
    there is none, :class:`DependencyError` when cuda-python is missing."""
    device = _devices.get(index)
    if device is None:
        runtime, _, _ = cuda_modules()
        count = check(runtime.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if count == 0:
            raise NoCudaDeviceError("no CUDA device found; use a CPU backend and preprocess=cpu")
        if not 0 <= index < count:
            raise InputError(f"CUDA device {index} does not exist; this machine has {count} "
                             f"(indices 0..{count - 1})")
        props = check(runtime.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = props.name.split(b"\0", 1)[0].decode(errors="replace") \
            if isinstance(props.name, bytes) else str(props.name)
        device = CudaDevice(index=index, name=name,
                            compute_capability=(int(props.major), int(props.minor)),
                            total_memory=int(props.totalGlobalMem),
                            integrated=bool(props.integrated),
                            can_map_host_memory=bool(props.canMapHostMemory))
        _devices[index] = device
    device.make_current()
    return device


def mem_info(device: Optional[CudaDevice] = None) -> Tuple[int, int]:
    """(free, total) device memory in bytes, as the driver reports it."""
    (device or get_device()).make_current()
    runtime, _, _ = cuda_modules()
    free, total = check(runtime.cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free), int(total)


def _nbytes(shape: Shape, dtype: Any) -> Tuple[Tuple[int, ...], "np.dtype[Any]", int]:
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if any(d <= 0 for d in dims):
        raise InputError(f"buffer shape {dims} must have positive dimensions")
    dt = np.dtype(dtype)
    return dims, dt, int(np.prod(dims)) * dt.itemsize


class Stream:
    """A CUDA stream. ``Stream()`` creates a non-blocking stream it owns; ``Stream.wrap(h)``
    borrows another library's stream (e.g. ``torch.cuda.current_stream().cuda_stream``)."""

    def __init__(self, device: Optional[CudaDevice] = None, _handle: Optional[int] = None) -> None:
        self.device = device or get_device()
        self._owned = _handle is None
        if _handle is None:
            runtime, _, _ = cuda_modules()
            self.device.make_current()
            stream = check(runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking),
                           "cudaStreamCreateWithFlags")
            _handle = int(stream)
        self.handle: int = _handle

    @classmethod
    def wrap(cls, handle: int, device: Optional[CudaDevice] = None) -> "Stream":
        return cls(device, _handle=int(handle))

    def cuda(self) -> Any:
        """The stream as a cuda-python ``cudaStream_t`` (for calls made outside this module)."""
        runtime, _, _ = cuda_modules()
        return runtime.cudaStream_t(self.handle)

    def synchronize(self) -> None:
        runtime, _, _ = cuda_modules()
        check(runtime.cudaStreamSynchronize(self.cuda()), "cudaStreamSynchronize")

    def wait(self, event: "Event") -> None:
        """Make later work on this stream wait for ``event`` (no host blocking)."""
        runtime, _, _ = cuda_modules()
        check(runtime.cudaStreamWaitEvent(self.cuda(), event.cuda(), 0), "cudaStreamWaitEvent")

    def close(self) -> None:
        if self._owned and self.handle:
            runtime, _, _ = cuda_modules()
            check(runtime.cudaStreamDestroy(self.cuda()), "cudaStreamDestroy")
        self.handle = 0


class Event:
    """A CUDA event: marks a point in a stream; ``timing=True`` allows :meth:`elapsed_ms`."""

    def __init__(self, timing: bool = False, device: Optional[CudaDevice] = None) -> None:
        runtime, _, _ = cuda_modules()
        (device or get_device()).make_current()
        flags = runtime.cudaEventDefault if timing else runtime.cudaEventDisableTiming
        self._event = check(runtime.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")
        self.recorded = False

    def cuda(self) -> Any:
        return self._event

    def record(self, stream: Stream) -> None:
        runtime, _, _ = cuda_modules()
        check(runtime.cudaEventRecord(self._event, stream.cuda()), "cudaEventRecord")
        self.recorded = True

    def synchronize(self) -> None:
        """Block until the work before the last :meth:`record` is done (no-op if never recorded)."""
        if self.recorded:
            runtime, _, _ = cuda_modules()
            check(runtime.cudaEventSynchronize(self._event), "cudaEventSynchronize")

    def query(self) -> bool:
        """True when the recorded work is done, without blocking."""
        if not self.recorded:
            return True
        runtime, _, _ = cuda_modules()
        status = runtime.cudaEventQuery(self._event)
        status = status[0] if isinstance(status, tuple) else status
        if status == runtime.cudaError_t.cudaErrorNotReady:
            return False
        check((status,), "cudaEventQuery")
        return True

    def elapsed_ms(self, end: "Event") -> float:
        """Milliseconds from this event to ``end`` (both recorded with ``timing=True``)."""
        runtime, _, _ = cuda_modules()
        return float(check(runtime.cudaEventElapsedTime(self._event, end.cuda()),
                           "cudaEventElapsedTime"))

    def close(self) -> None:
        if self._event is not None:
            runtime, _, _ = cuda_modules()
            check(runtime.cudaEventDestroy(self._event), "cudaEventDestroy")
            self._event = None


class _Buffer:
    shape: Tuple[int, ...]
    dtype: "np.dtype[Any]"
    nbytes: int
    ptr: int

    def _check_host(self, host: np.ndarray, what: str) -> None:
        if not isinstance(host, np.ndarray):
            raise InputError(f"{what}: expected a numpy array, got {type(host).__name__}")
        if host.dtype != self.dtype:
            raise InputError(f"{what}: dtype {host.dtype} does not match the buffer's {self.dtype}")
        if host.nbytes > self.nbytes:
            raise InputError(f"{what}: array of shape {host.shape} ({host.nbytes} bytes) does "
                             f"not fit the buffer of shape {self.shape} ({self.nbytes} bytes)")
        if not host.flags.c_contiguous:
            raise InputError(f"{what}: the array must be C-contiguous (np.ascontiguousarray)")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        try:
            self.close()  # type: ignore[attr-defined]
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


class DeviceBuffer(_Buffer):
    """``shape`` x ``dtype`` of device memory (cudaMalloc). ``ptr`` is the device address to
    hand to kernels and TensorRT's ``set_tensor_address``."""

    def __init__(self, shape: Shape, dtype: Any = np.uint8,
                 device: Optional[CudaDevice] = None) -> None:
        self.ptr = 0
        self.shape, self.dtype, self.nbytes = _nbytes(shape, dtype)
        self.device = device or get_device()
        self.device.make_current()
        runtime, _, _ = cuda_modules()
        self.ptr = int(check(runtime.cudaMalloc(self.nbytes),
                             f"cudaMalloc of {self.nbytes / 2**20:.1f} MiB"))
        _count("device", self.nbytes)

    def upload(self, host: np.ndarray, stream: Stream) -> None:
        """Async copy of ``host`` (pinned for true asynchrony) into the start of the buffer."""
        self._check_host(host, "upload")
        copy_async(self.ptr, host.ctypes.data, host.nbytes, stream, "h2d")

    def download(self, host: np.ndarray, stream: Stream) -> None:
        """Async copy of the first ``host.nbytes`` bytes of the buffer into ``host``."""
        self._check_host(host, "download")
        copy_async(host.ctypes.data, self.ptr, host.nbytes, stream, "d2h")

    def close(self) -> None:
        if self.ptr:
            runtime, _, _ = cuda_modules()
            ptr, self.ptr = self.ptr, 0
            check(runtime.cudaFree(ptr), "cudaFree")
            _count("device", -self.nbytes)


class PinnedBuffer(_Buffer):
    """Page-locked host memory seen as a numpy array (``.array``), the source or destination of
    async copies. ``mapped=True`` also maps it into the device's address space
    (``.device_ptr``): on an integrated GPU (Jetson) kernels read it in place, with no copy."""

    def __init__(self, shape: Shape, dtype: Any = np.uint8, mapped: bool = False,
                 device: Optional[CudaDevice] = None) -> None:
        self.ptr = 0
        self.shape, self.dtype, self.nbytes = _nbytes(shape, dtype)
        self.device = device or get_device()
        if mapped and not self.device.can_map_host_memory:
            raise BackendError(f"{self.device.name} cannot map host memory; use mapped=False")
        self.device.make_current()
        runtime, _, _ = cuda_modules()
        flags = runtime.cudaHostAllocMapped if mapped else runtime.cudaHostAllocDefault
        self.ptr = int(check(runtime.cudaHostAlloc(self.nbytes, flags),
                             f"cudaHostAlloc of {self.nbytes / 2**20:.1f} MiB pinned memory"))
        _count("host", self.nbytes)
        self.mapped = mapped
        raw: Any = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self._array: Optional[np.ndarray] = \
            np.frombuffer(raw, dtype=np.uint8).view(self.dtype).reshape(self.shape)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise BackendError("pinned buffer is closed")
        return self._array

    @property
    def device_ptr(self) -> int:
        """Device address of a mapped buffer (what kernels read on an integrated GPU)."""
        if not self.mapped or not self.ptr:
            raise BackendError("device_ptr needs an open PinnedBuffer(mapped=True)")
        runtime, _, _ = cuda_modules()
        return int(check(runtime.cudaHostGetDevicePointer(self.ptr, 0),
                         "cudaHostGetDevicePointer"))

    def upload_to(self, device: DeviceBuffer, stream: Stream, nbytes: Optional[int] = None) -> None:
        """Async copy of the first ``nbytes`` (default: all) into ``device``."""
        n = self.nbytes if nbytes is None else int(nbytes)
        if n > device.nbytes or n > self.nbytes:
            raise InputError(f"copy of {n} bytes overflows a buffer ({self.nbytes} host, "
                             f"{device.nbytes} device)")
        copy_async(device.ptr, self.ptr, n, stream, "h2d")

    def download_from(self, device: DeviceBuffer, stream: Stream,
                      nbytes: Optional[int] = None) -> None:
        n = self.nbytes if nbytes is None else int(nbytes)
        if n > device.nbytes or n > self.nbytes:
            raise InputError(f"copy of {n} bytes overflows a buffer ({device.nbytes} device, "
                             f"{self.nbytes} host)")
        copy_async(self.ptr, device.ptr, n, stream, "d2h")

    def close(self) -> None:
        if self.ptr:
            self._array = None
            runtime, _, _ = cuda_modules()
            ptr, self.ptr = self.ptr, 0
            check(runtime.cudaFreeHost(ptr), "cudaFreeHost")
            _count("host", -self.nbytes)


_KINDS = {"h2d": "cudaMemcpyHostToDevice", "d2h": "cudaMemcpyDeviceToHost",
          "d2d": "cudaMemcpyDeviceToDevice"}


def copy_async(dst: int, src: int, nbytes: int, stream: Stream, kind: str) -> None:
    """``cudaMemcpyAsync`` between raw addresses; ``kind`` is ``h2d``, ``d2h`` or ``d2d``."""
    runtime, _, _ = cuda_modules()
    check(runtime.cudaMemcpyAsync(dst, src, nbytes, getattr(runtime.cudaMemcpyKind, _KINDS[kind]),
                                  stream.cuda()), f"cudaMemcpyAsync ({kind}, {nbytes} bytes)")


def copy_2d_async(dst: int, dst_pitch: int, src: int, src_pitch: int, width_bytes: int,
                  rows: int, stream: Stream, kind: str) -> None:
    """``cudaMemcpy2DAsync``: ``rows`` rows of ``width_bytes`` each (an image sub-rectangle)."""
    runtime, _, _ = cuda_modules()
    check(runtime.cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width_bytes, rows,
                                    getattr(runtime.cudaMemcpyKind, _KINDS[kind]), stream.cuda()),
          f"cudaMemcpy2DAsync ({kind}, {rows} x {width_bytes} bytes)")


def is_pinned(array: np.ndarray) -> bool:
    """True when ``array``'s memory is page-locked (allocated or registered with CUDA)."""
    runtime, _, _ = cuda_modules()
    result = runtime.cudaPointerGetAttributes(array.ctypes.data)
    if int(result[0]) != 0:
        return False
    return bool(result[1].type == runtime.cudaMemoryType.cudaMemoryTypeHost)
