"""The resampling plan of one input size: PIL's exact filter taps, ready for a GPU kernel.

:mod:`edge_resnet.preprocessing` resizes with Pillow (bilinear, antialiased: the filter support
widens with the downscale factor) and resamples only the centre crop's preimage (a ``box``).
Pillow does it in two separable passes with 22-bit fixed-point weights and rounds to uint8
between the passes (``libImaging/Resample.c``: ``precompute_coeffs``,
``normalize_coeffs_8bpc``, ``ImagingResampleInner``). This module computes the same weights and
bounds in numpy, so kernels that apply them reproduce Pillow bit for bit, including the
crop-only and plain-resize cases (which become identity or full-frame plans). It also names the
source rectangle the taps touch, so only that region needs to reach the GPU.

Pure numpy; no CUDA needed (tested on the CPU against Pillow). Device side: Python 3.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from edge_resnet.core import InputError, ModelSpec
from edge_resnet.preprocessing import crop_box, resized_size

__all__ = ["PRECISION_BITS", "AxisPlan", "ResamplePlan", "apply_plan", "make_plan"]

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images


@dataclass(frozen=True)
class AxisPlan:
    """Taps along one axis: output ``i`` reads source ``start[i] .. start[i] + count[i] - 1``
    (relative to ``offset``) with int32 weights ``weights[i, :count[i]]``."""

    offset: int
    extent: int
    start: np.ndarray
    count: np.ndarray
    weights: np.ndarray

    @property
    def ksize(self) -> int:
        return int(self.weights.shape[1])


@dataclass(frozen=True)
class ResamplePlan:
    """Both axes for an input of ``height`` x ``width``; the output is ``size`` x ``size``."""

    width: int
    height: int
    size: int
    horizontal: AxisPlan
    vertical: AxisPlan

    @property
    def region(self) -> Tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the only source pixels the output depends on."""
        h, v = self.horizontal, self.vertical
        return h.offset, v.offset, h.offset + h.extent, v.offset + v.extent


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _axis(in_size: int, in0: float, in1: float, out_size: int) -> AxisPlan:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter."""
    lo, hi = np.float32(in0), np.float32(in1)
    scale = float(np.float32(hi - lo)) / out_size  # Pillow gets the box as C floats
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centers = float(lo) + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # C (int) truncates
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize, dtype=np.float64)
    w = _bilinear((taps[None, :] + xmin[:, None] - centers[:, None] + 0.5) / filterscale)
    w[taps[None, :] >= xmax[:, None]] = 0.0
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w, where=total != 0.0)
    fixed = np.where(w < 0, -0.5 + w * (1 << PRECISION_BITS),
                     0.5 + w * (1 << PRECISION_BITS)).astype(np.int32)  # C cast truncates
    offset = int(xmin.min())
    extent = int((xmin + xmax).max()) - offset
    return AxisPlan(offset=offset, extent=extent, start=(xmin - offset).astype(np.int32),
                    count=xmax.astype(np.int32), weights=np.ascontiguousarray(fixed))


def make_plan(height: int, width: int, spec: ModelSpec) -> ResamplePlan:
    """The plan that makes ``preprocessing.resize_crop`` of a ``height`` x ``width`` frame."""
    if height < 1 or width < 1:
        raise InputError(f"cannot preprocess an empty {height}x{width} image")
    new_w, new_h = resized_size(width, height, spec)
    size = spec.resolution
    left, top, right, bottom = crop_box(new_w, new_h, size)
    if (new_w, new_h) == (width, height) and left >= 0 and top >= 0:
        box = (float(left), float(top), float(right), float(bottom))  # crop only: identity taps
    else:
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, right * sx, bottom * sy)
    return ResamplePlan(width=width, height=height, size=size,
                        horizontal=_axis(width, box[0], box[2], size),
                        vertical=_axis(height, box[1], box[3], size))


def _pass(src: np.ndarray, axis: AxisPlan) -> np.ndarray:
    """One fixed-point pass along axis 1 of ``src`` (rows x cols x channels), as the kernel does."""
    out = np.empty((src.shape[0], axis.start.shape[0], src.shape[2]), dtype=np.uint8)
    for i in range(axis.start.shape[0]):
        s, n = int(axis.start[i]), int(axis.count[i])
        acc = (src[:, s:s + n, :].astype(np.int64) * axis.weights[i, :n][None, :, None]).sum(1)
        acc += 1 << (PRECISION_BITS - 1)
        out[:, i, :] = np.clip(acc >> PRECISION_BITS, 0, 255)
    return out


def apply_plan(image: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """numpy model of the two GPU passes (horizontal, round to uint8, vertical): the
    executable statement of what the kernels compute, checked against Pillow in the tests."""
    x0, y0, x1, y1 = plan.region
    region = image[y0:y1, x0:x1]
    tmp = _pass(region, plan.horizontal)
    return _pass(tmp.transpose(1, 0, 2), plan.vertical).transpose(1, 0, 2)
