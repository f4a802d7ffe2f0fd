"""GPU preprocessing: the second implementation of :mod:`edge_resnet.preprocessing`.

uint8 HxWx3 frames (RGB or BGR, any size) become exactly what
:func:`edge_resnet.preprocessing.preprocess_batch` makes — Pillow's antialiased bilinear resize
of the centre crop (or a plain resize), then normalised float32/float16 NCHW, or the uint8 NHWC
input of a fused graph — written into device memory (the backend's input buffer).

Per frame only the crop's preimage travels: it is copied into a pinned staging slot (or sent
straight from the frame when it already is pinned) and sent with one async H2D copy (none on
an integrated GPU: the kernels read mapped memory), then resampled by two kernels
(:mod:`edge_resnet.cuda.kernels`). Plans (filter taps) are computed once per input size and
kept on the device; staging slots and scratch buffers are reused, so a steady stream of frames
allocates nothing. Staging (:meth:`GpuPreprocessor.stage`) may run in another thread than the
GPU work, so the CPU copy of frame n+1 overlaps the GPU work of frame n.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.core import InputError, ModelSpec
from edge_resnet.cuda import kernels as K
from edge_resnet.cuda.memory import (CudaDevice, DeviceBuffer, PinnedBuffer, Stream,
                                     copy_2d_async, get_device, is_pinned)
from edge_resnet.cuda.resample_plan import ResamplePlan, make_plan
from edge_resnet.cuda.ring import BatchSlot
from edge_resnet.cuda.staging import StagingPool

__all__ = ["GpuPreprocessor", "StagedFrame"]

_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}
_PLAN_CACHE = 16


class _DevicePlan:
    """A plan's int32 tables in one device buffer (start, count, weights per axis)."""

    def __init__(self, plan: ResamplePlan, stream: Stream) -> None:
        self.plan = plan
        parts = [plan.horizontal.start, plan.horizontal.count, plan.horizontal.weights.ravel(),
                 plan.vertical.start, plan.vertical.count, plan.vertical.weights.ravel()]
        table = np.ascontiguousarray(np.concatenate(parts).astype(np.int32))
        self.buffer = DeviceBuffer(table.shape, np.int32)
        self.buffer.upload(table, stream)
        stream.synchronize()  # ``table`` is pageable and local: finish before it goes away
        offsets = np.cumsum([0] + [p.size for p in parts]) * 4 + self.buffer.ptr
        self.h = tuple(int(o) for o in offsets[0:3])
        self.v = tuple(int(o) for o in offsets[3:6])

    def close(self) -> None:
        self.buffer.close()


class StagedFrame:
    """A frame made ready for the GPU by :meth:`GpuPreprocessor.stage`: its crop preimage in a
    pinned slot (or, for a frame that already is pinned, its address), plus its plan."""

    __slots__ = ("plan", "slot", "src", "pitch", "keep")

    def __init__(self, plan: _DevicePlan, slot: Optional[BatchSlot], src: int, pitch: int,
                 keep: Optional[np.ndarray]) -> None:
        self.plan, self.slot, self.src, self.pitch, self.keep = plan, slot, src, pitch, keep


class GpuPreprocessor:
    """Preprocess frames for ``spec`` on the GPU.

    ``out_dtype``: ``float32`` / ``float16`` (normalised) or ``uint8`` (raw pixels, for a
    fused-preprocessing graph; the default when the spec says so); channel order and layout
    come from the spec. ``mapped``: kernels read frames from mapped pinned memory instead of
    a device copy (default: on integrated GPUs only, where that memory *is* device memory).

    :meth:`run` does everything in the calling thread; a pipeline can split it: :meth:`stage`
    (CPU copy into pinned memory, any thread) then :meth:`run` on the staged frames (H2D +
    kernels, the inference thread).
    """

    def __init__(self, spec: ModelSpec, out_dtype: Optional[str] = None,
                 stream: Optional[Stream] = None, device: Optional[CudaDevice] = None,
                 mapped: Optional[bool] = None) -> None:
        self.spec = spec
        name = out_dtype or ("uint8" if spec.fused_preprocessing else "float32")
        if name not in _DTYPES:
            raise InputError(f"GPU preprocessing writes float32, float16 or uint8, not {name!r}")
        if (name == "uint8") != spec.fused_preprocessing:
            raise InputError(f"{name} output does not fit this model: fused-preprocessing "
                             "models take raw uint8 pixels, the others normalised float")
        self.dtype = np.dtype(_DTYPES[name])
        self.device = device or get_device()
        self.stream = stream or Stream(self.device)
        self.mapped = self.device.integrated if mapped is None else bool(mapped)
        self._kernels = K.kernels_for(self.device)
        nhwc = spec.layout == "NHWC"
        self._layout = (K.DTYPE_CODES[name], nhwc, spec.color_order == "BGR")
        mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
        self._mean = [float(m) for m in mean]
        self._inv_std = [float(s) for s in 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)]
        size = spec.resolution
        self.image_shape: Tuple[int, ...] = (size, size, 3) if nhwc else (3, size, size)
        self.image_nbytes = int(np.prod(self.image_shape)) * self.dtype.itemsize
        self._lock = threading.Lock()
        self._plans: "OrderedDict[Tuple[int, int], _DevicePlan]" = OrderedDict()
        self._retired: List[_DevicePlan] = []
        self._outstanding = 0
        self._pool = StagingPool(mapped=self.mapped)
        self._region: Optional[DeviceBuffer] = None
        self._tmp: Optional[DeviceBuffer] = None
        self._output: Optional[DeviceBuffer] = None

    # buffers -------------------------------------------------------------------------------
    def _plan(self, height: int, width: int) -> _DevicePlan:
        key = (height, width)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = _DevicePlan(make_plan(height, width, self.spec), self.stream)
                self._plans[key] = plan
                if len(self._plans) > _PLAN_CACHE:  # freed once no staged frame can use it
                    self._retired.append(self._plans.popitem(last=False)[1])
            else:
                self._plans.move_to_end(key)
            return plan

    def _scratch(self, region_bytes: int, tmp_bytes: int) -> None:
        """Grow the device scratch buffers when a frame needs more (rare: a new size)."""
        for name, nbytes in (("_region", region_bytes), ("_tmp", tmp_bytes)):
            current: Optional[DeviceBuffer] = getattr(self, name)
            if nbytes and (current is None or current.nbytes < nbytes):
                if current is not None:
                    self.stream.synchronize()
                    current.close()
                setattr(self, name, DeviceBuffer(nbytes, np.uint8))

    def _free_retired(self) -> None:
        with self._lock:
            if not self._retired or self._outstanding:
                return
            retired, self._retired = self._retired, []
        self.stream.synchronize()
        for plan in retired:
            plan.close()

    # work ----------------------------------------------------------------------------------
    def stage(self, image: np.ndarray) -> StagedFrame:
        """Copy the part of ``image`` (uint8 HxWx3) the output depends on into pinned memory.
        Thread-safe; a pinned frame is not copied (keep it unchanged until :meth:`run`)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an HxWx3 uint8 image, got {getattr(image, 'shape', image)}")
        if image.dtype != np.uint8:
            raise InputError(f"expected a uint8 image, got dtype {image.dtype}")
        self.device.make_current()
        dplan = self._plan(image.shape[0], image.shape[1])
        x0, y0, x1, y1 = dplan.plan.region
        pitch = image.strides[0]
        if not self.mapped and image.strides[1:] == (3, 1) and is_pinned(image):
            staged = StagedFrame(dplan, None, image.ctypes.data + y0 * pitch + x0 * 3, pitch,
                                 image)
        else:
            rows, row_bytes = y1 - y0, (x1 - x0) * 3
            slot = self._pool.acquire(rows * row_bytes)
            host: PinnedBuffer = slot["host"]
            np.copyto(host.array[:rows * row_bytes].reshape(rows, x1 - x0, 3),
                      image[y0:y1, x0:x1])
            staged = StagedFrame(dplan, slot, host.device_ptr if self.mapped else host.ptr,
                                 row_bytes, None)
        with self._lock:
            self._outstanding += 1
        return staged

    def run(self, images: "Sequence[np.ndarray | StagedFrame]", out_ptr: int,
            color_order: str = "RGB") -> None:
        """Preprocess frames (arrays, or :meth:`stage` d frames) into device memory at
        ``out_ptr`` (``len(images)`` x :attr:`image_shape` of :attr:`dtype`), asynchronously on
        :attr:`stream`."""
        if len(images) == 0:
            raise InputError("cannot preprocess an empty batch")
        if color_order not in ("RGB", "BGR"):
            raise InputError(f"color order must be RGB or BGR, got {color_order!r}")
        self.device.make_current()  # kernels launch through the driver API: per-thread context
        for i, item in enumerate(images):
            staged = item if isinstance(item, StagedFrame) else self.stage(item)
            try:
                self._run_staged(staged, color_order, out_ptr + i * self.image_nbytes)
            finally:
                with self._lock:
                    self._outstanding -= 1
        self._free_retired()

    def _run_staged(self, staged: StagedFrame, color_order: str, out_ptr: int) -> None:
        plan = staged.plan.plan
        x0, y0, x1, y1 = plan.region
        rows, row_bytes = y1 - y0, (x1 - x0) * 3
        self._scratch(0 if self.mapped else rows * row_bytes, rows * plan.size * 3)
        src, pitch = staged.src, staged.pitch
        if not self.mapped:
            assert self._region is not None
            copy_2d_async(self._region.ptr, row_bytes, src, pitch, row_bytes, rows, self.stream,
                          "h2d")
            src, pitch = self._region.ptr, row_bytes
        self._resample(staged.plan, src, pitch, color_order, out_ptr)
        if staged.slot is not None:  # reusable once the copy (or mapped reads) are done
            self._pool.release(staged.slot, self.stream)

    def _resample(self, dplan: _DevicePlan, src: int, pitch: int, color_order: str,
                  out_ptr: int) -> None:
        """The two kernels: ``src`` is the region's first pixel, rows ``pitch`` bytes apart."""
        plan, size = dplan.plan, dplan.plan.size
        _, y0, _, y1 = plan.region
        assert self._tmp is not None
        hs, hc, hw = dplan.h
        self._kernels.horizontal(src, pitch, y1 - y0, size, hs, hc, hw, plan.horizontal.ksize,
                                 color_order == "BGR", self._tmp.ptr, self.stream)
        vs, vc, vw = dplan.v
        self._kernels.vertical(self._tmp.ptr, size, vs, vc, vw, plan.vertical.ksize, self._layout,
                               self._mean, self._inv_std, out_ptr, self.stream)

    def run_device(self, src_ptr: int, height: int, width: int, pitch: int, out_ptr: int,
                   color_order: str = "RGB") -> None:
        """Preprocess one frame that already is in device memory (a hardware decoder's or a
        camera's output: ``height`` rows of ``width`` x 3 uint8, ``pitch`` bytes apart) into
        ``out_ptr``; no copy at all, asynchronously on :attr:`stream`."""
        if color_order not in ("RGB", "BGR"):
            raise InputError(f"color order must be RGB or BGR, got {color_order!r}")
        if pitch < width * 3:
            raise InputError(f"row pitch {pitch} is shorter than a row of {width} RGB pixels")
        self.device.make_current()
        dplan = self._plan(height, width)
        x0, y0, x1, y1 = dplan.plan.region
        self._scratch(0, (y1 - y0) * dplan.plan.size * 3)
        self._resample(dplan, src_ptr + y0 * pitch + x0 * 3, pitch, color_order, out_ptr)

    def output_buffer(self, batch: int) -> DeviceBuffer:
        """A device buffer for ``batch`` preprocessed images, owned and reused by this object."""
        if self._output is None or self._output.shape[0] < batch:
            if self._output is not None:
                self.stream.synchronize()
                self._output.close()
            self._output = DeviceBuffer((batch,) + self.image_shape, self.dtype)
        return self._output

    def to_host(self, images: Sequence[np.ndarray], color_order: str = "RGB") -> np.ndarray:
        """Preprocess and copy back: the GPU twin of ``preprocess_batch`` (tests, checks)."""
        out = self.output_buffer(len(images))
        self.run(images, out.ptr, color_order)
        host = np.empty((len(images),) + self.image_shape, dtype=self.dtype)
        out.download(host, self.stream)
        self.stream.synchronize()
        return host

    def close(self) -> None:
        self.stream.synchronize()
        for plan in list(self._plans.values()) + self._retired:
            plan.close()
        self._plans.clear()
        self._retired = []
        for buffer in (self._region, self._tmp, self._output):
            if buffer is not None:
                buffer.close()
        self._pool.close()
        self._region = self._tmp = self._output = None

    def __enter__(self) -> "GpuPreprocessor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
