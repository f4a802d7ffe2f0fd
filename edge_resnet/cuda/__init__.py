"""The CUDA memory layer shared by the GPU backends (PyTorch, TensorRT) and GPU preprocessing.

Built on cuda-python (``pip install 'edge-resnet[cuda]'``), imported on first use, so
``import edge_resnet.cuda`` costs nothing on a machine without CUDA. Device side: Python 3.8,
no torch. API (all in :mod:`edge_resnet.cuda.memory` / :mod:`edge_resnet.cuda.ring`)::

    dev = get_device(0)            # CudaDevice(name, compute_capability, integrated, ...);
                                   # NoCudaDeviceError without a GPU, DependencyError
                                   # without cuda-python; made current in this thread
    dev.make_current()             # call once in each thread that uses CUDA
    stream = Stream()              # owned non-blocking stream; Stream.wrap(int) borrows one
    host = PinnedBuffer((8, 3, 224, 224), np.float32)   # .array is a numpy view, .ptr
    host_mapped = PinnedBuffer(shape, dtype, mapped=True)   # .device_ptr: zero-copy (Jetson)
    dbuf = DeviceBuffer((8, 3, 224, 224), np.float32)   # .ptr for kernels / set_tensor_address
    dbuf.upload(host.array, stream); dbuf.download(host.array, stream)
    host.upload_to(dbuf, stream, nbytes); host.download_from(dbuf, stream, nbytes)
    copy_async(dst_ptr, src_ptr, nbytes, stream, "h2d" | "d2h" | "d2d"); copy_2d_async(...)
    ev = Event(timing=False); ev.record(stream); ev.query(); ev.synchronize(); ev.elapsed_ms(end)
    ring = InFlightRing(lambda: {"in": PinnedBuffer(...), "out": DeviceBuffer(...)}, depth=2)
    slot = ring.acquire()          # waits until this slot's previous batch is done
    ...; slot.release(stream)      # records the slot's event after its last async op
    allocation_stats()             # counts of allocations/frees: steady state allocates nothing
    mem_info()                     # (free, total) device bytes

GPU preprocessing (Pillow's numbers, into any device buffer) is
:class:`edge_resnet.cuda.preprocess.GpuPreprocessor`; :class:`edge_resnet.cuda.staging.StagingPool`
hands pinned slots between threads. See docs/gpu.md.

Errors: :class:`CudaOutOfMemoryError` (a ``BackendError``) when an allocation fails,
:class:`NoCudaDeviceError` (a ``DependencyError``) without a usable GPU, ``InputError`` for a
wrong dtype/shape/size, ``BackendError`` for any other CUDA failure, each naming the call.
"""

from __future__ import annotations

from edge_resnet.cuda._bindings import CudaOutOfMemoryError, NoCudaDeviceError
from edge_resnet.cuda.memory import (CudaDevice, DeviceBuffer, Event, PinnedBuffer, Stream,
                                     allocation_stats, copy_2d_async, copy_async, cuda_available,
                                     get_device, is_pinned, mem_info)
from edge_resnet.cuda.ring import BatchSlot, InFlightRing

__all__ = ["BatchSlot", "CudaDevice", "CudaOutOfMemoryError", "DeviceBuffer", "Event",
           "InFlightRing", "NoCudaDeviceError", "PinnedBuffer", "Stream", "allocation_stats",
           "copy_2d_async", "copy_async", "cuda_available", "get_device", "is_pinned",
           "mem_info"]
