"""NVRTC-compiled CUDA kernels of GPU preprocessing, loaded once per device and process.

Two kernels apply a :class:`edge_resnet.cuda.resample_plan.ResamplePlan` the way Pillow does:
``resample_h`` (horizontal taps over the needed source rows, rounding to uint8, swapping BGR to
RGB) and ``resample_v`` (vertical taps, then the model's input format: normalised float32 or
float16, or raw uint8 for fused-preprocessing graphs; NCHW or NHWC; RGB or BGR). Normalisation is
``(v - mean*255) * (1 / (std*255))`` in float32 with the constants
:func:`edge_resnet.preprocessing.normalize` uses, compiled without FMA contraction, so it rounds
identically. float16 uses ``cvt.rn`` (round to nearest even, as numpy's ``astype``).
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from edge_resnet.core import BackendError
from edge_resnet.cuda._bindings import check, cuda_modules, nvrtc_check
from edge_resnet.cuda.memory import CudaDevice, Stream

__all__ = ["DTYPE_CODES", "PreprocessKernels", "kernels_for"]

DTYPE_CODES = {"float32": 0, "float16": 1, "uint8": 2}

SOURCE = r"""
#define PB 22
__device__ __forceinline__ unsigned char clip8(int v) {
    if (v >= (1 << PB << 8)) return 255;
    if (v <= 0) return 0;
    return (unsigned char)(v >> PB);
}
__device__ __forceinline__ unsigned short to_half(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
extern "C" __global__ void resample_h(
        const unsigned char* __restrict__ src, int src_pitch, int rows, int out_w,
        const int* __restrict__ start, const int* __restrict__ count,
        const int* __restrict__ weights, int ksize, int bgr, unsigned char* __restrict__ dst) {
    int xx = blockIdx.x * blockDim.x + threadIdx.x;
    int yy = blockIdx.y * blockDim.y + threadIdx.y;
    if (xx >= out_w || yy >= rows) return;
    const unsigned char* p = src + (size_t)yy * src_pitch + (size_t)start[xx] * 3;
    const int* k = weights + (size_t)xx * ksize;
    int n = count[xx];
    int s0 = 1 << (PB - 1), s1 = s0, s2 = s0;
    for (int i = 0; i < n; ++i) {
        int w = k[i];
        s0 += p[3 * i] * w; s1 += p[3 * i + 1] * w; s2 += p[3 * i + 2] * w;
    }
    unsigned char c0 = clip8(s0), c2 = clip8(s2);
    unsigned char* o = dst + ((size_t)yy * out_w + xx) * 3;
    o[0] = bgr ? c2 : c0; o[1] = clip8(s1); o[2] = bgr ? c0 : c2;
}
extern "C" __global__ void resample_v(
        const unsigned char* __restrict__ tmp, int size,
        const int* __restrict__ start, const int* __restrict__ count,
        const int* __restrict__ weights, int ksize, int dtype, int nhwc, int bgr,
        float m0, float m1, float m2, float s0, float s1, float s2, void* __restrict__ out) {
    int xx = blockIdx.x * blockDim.x + threadIdx.x;
    int yy = blockIdx.y * blockDim.y + threadIdx.y;
    if (xx >= size || yy >= size) return;
    size_t stride = (size_t)size * 3;
    const unsigned char* p = tmp + (size_t)start[yy] * stride + (size_t)xx * 3;
    const int* k = weights + (size_t)yy * ksize;
    int n = count[yy];
    int a0 = 1 << (PB - 1), a1 = a0, a2 = a0;
    for (int i = 0; i < n; ++i) {
        int w = k[i];
        const unsigned char* q = p + i * stride;
        a0 += q[0] * w; a1 += q[1] * w; a2 += q[2] * w;
    }
    unsigned char rgb[3] = {clip8(a0), clip8(a1), clip8(a2)};
    size_t pix = (size_t)yy * size + xx;
    size_t step = nhwc ? 1 : (size_t)size * size;
    size_t base = nhwc ? pix * 3 : pix;
    float m[3] = {m0, m1, m2}, s[3] = {s0, s1, s2};
    for (int c = 0; c < 3; ++c) {
        int src = bgr ? 2 - c : c;  /* output channel c holds this RGB channel */
        size_t at = base + c * step;
        if (dtype == 0) {
            ((float*)out)[at] = ((float)rgb[src] - m[src]) * s[src];
        } else if (dtype == 1) {
            ((unsigned short*)out)[at] = to_half(((float)rgb[src] - m[src]) * s[src]);
        } else {
            ((unsigned char*)out)[at] = rgb[src];
        }
    }
}
"""

_BLOCK = (32, 8, 1)
_lock = threading.Lock()
_cache: Dict[int, "PreprocessKernels"] = {}


def _compile(device: CudaDevice) -> bytes:
    """NVRTC: CUBIN for the device's exact architecture, or PTX for the driver to JIT when this
    NVRTC predates the GPU (e.g. an older cuda-python wheel on a newer board)."""
    _, _, nvrtc = cuda_modules()
    major, minor = device.compute_capability
    prog = nvrtc_check(nvrtc.nvrtcCreateProgram(SOURCE.encode(), b"edge_resnet_pre.cu", 0, [],
                                                []), "nvrtcCreateProgram")
    try:
        for arch, cubin in ((f"sm_{major}{minor}", True), (f"compute_{major}{minor}", False)):
            opts = [f"--gpu-architecture={arch}".encode(), b"--fmad=false"]
            status = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
            if int(status[0]) != 0:
                size = nvrtc_check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
                log = b" " * size
                nvrtc.nvrtcGetProgramLog(prog, log)
                if "arch" in log.decode(errors="replace") and cubin:
                    continue  # this NVRTC does not know the GPU: try PTX
                nvrtc_check(status, f"NVRTC compile for {arch}", log.decode(errors="replace"))
            get_size = nvrtc.nvrtcGetCUBINSize if cubin else nvrtc.nvrtcGetPTXSize
            get = nvrtc.nvrtcGetCUBIN if cubin else nvrtc.nvrtcGetPTX
            size = nvrtc_check(get_size(prog), "nvrtc size")
            image = b" " * size
            nvrtc_check(get(prog, image), "nvrtc get image")
            return image
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    raise BackendError(f"NVRTC cannot compile for compute capability {major}.{minor}; "
                       "upgrade cuda-python / nvidia-cuda-nvrtc")


class PreprocessKernels:
    """The compiled module of one device, with typed launchers."""

    def __init__(self, device: CudaDevice) -> None:
        _, driver, _ = cuda_modules()
        self.device = device
        device.make_current()
        self._module = check(driver.cuModuleLoadData(_compile(device)), "cuModuleLoadData")
        self._h = check(driver.cuModuleGetFunction(self._module, b"resample_h"),
                        "cuModuleGetFunction(resample_h)")
        self._v = check(driver.cuModuleGetFunction(self._module, b"resample_v"),
                        "cuModuleGetFunction(resample_v)")

    @staticmethod
    def _args(values: Sequence[Tuple[Any, Any]]) -> Tuple[np.ndarray, Any]:
        """Kernel parameters as cuLaunchKernel wants them: an array of pointers to the values."""
        cells = [np.array([v], dtype=t) for v, t in values]
        pointers = np.array([c.ctypes.data for c in cells], dtype=np.uint64)
        return pointers, cells

    def _launch(self, fn: Any, grid: Tuple[int, int], values: Sequence[Tuple[Any, Any]],
                stream: Stream) -> None:
        _, driver, _ = cuda_modules()
        pointers, keep = self._args(values)
        check(driver.cuLaunchKernel(fn, grid[0], grid[1], 1, _BLOCK[0], _BLOCK[1], 1, 0,
                                    driver.CUstream(stream.handle), pointers.ctypes.data, 0),
              "cuLaunchKernel")
        del keep

    def horizontal(self, src: int, src_pitch: int, rows: int, out_w: int, start: int, count: int,
                   weights: int, ksize: int, bgr: bool, dst: int, stream: Stream) -> None:
        u64, i32 = np.uint64, np.int32
        grid = (-(-out_w // _BLOCK[0]), -(-rows // _BLOCK[1]))
        self._launch(self._h, grid, [(src, u64), (src_pitch, i32), (rows, i32), (out_w, i32),
                                     (start, u64), (count, u64), (weights, u64), (ksize, i32),
                                     (int(bgr), i32), (dst, u64)], stream)

    def vertical(self, tmp: int, size: int, start: int, count: int, weights: int, ksize: int,
                 layout: Tuple[int, bool, bool], mean: Sequence[float], inv_std: Sequence[float],
                 out: int, stream: Stream) -> None:
        """``layout`` = (dtype code, NHWC?, BGR?) of the output."""
        u64, i32, f32 = np.uint64, np.int32, np.float32
        grid = (-(-size // _BLOCK[0]), -(-size // _BLOCK[1]))
        values: list = [(tmp, u64), (size, i32), (start, u64), (count, u64), (weights, u64),
                        (ksize, i32), (layout[0], i32), (int(layout[1]), i32),
                        (int(layout[2]), i32)]
        values += [(m, f32) for m in mean] + [(s, f32) for s in inv_std] + [(out, u64)]
        self._launch(self._v, grid, values, stream)


def kernels_for(device: CudaDevice) -> PreprocessKernels:
    """The device's compiled kernels (NVRTC runs once per device and process)."""
    with _lock:
        kernels = _cache.get(device.index)
        if kernels is None:
            kernels = PreprocessKernels(device)
            _cache[device.index] = kernels
        return kernels
