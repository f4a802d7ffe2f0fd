"""The one preprocessing definition used by finetune, export checks, calibration, eval and runtime.

Numerics follow torchvision's PIL path to within one 8-bit level: ``Resize(resize)`` (shorter
side, bilinear with PIL's antialiasing) + ``CenterCrop(resolution)`` + ``ToTensor`` + ``Normalize(mean, std)``, or a
plain ``Resize((resolution, resolution))``. Using PIL for the resize is what makes the SDK match
the FP32 reference the model was trained with; OpenCV's resize kernels differ by several levels.

It runs on the device (Python 3.8, no torch): numpy and Pillow only.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from edge_resnet.core import InputError, ModelSpec

# Pillow >= 9.1 names filters under Image.Resampling (the only place in Pillow 13).
_BILINEAR = Image.Resampling.BILINEAR if hasattr(Image, "Resampling") else 2

__all__ = ["crop_box", "normalize", "preprocess", "preprocess_batch", "resize_crop",
           "resized_size"]


def resized_size(width: int, height: int, spec: ModelSpec) -> Tuple[int, int]:
    """(width, height) after the resize step, computed as torchvision does."""
    if spec.resize is None:
        return spec.resolution, spec.resolution
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.resize, int(spec.resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_box(width: int, height: int, size: int) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's ``CenterCrop(size)``."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def _as_pil(image: "np.ndarray | Image.Image", color_order: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"expected an HxWx3 uint8 image, got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got dtype {image.dtype}")
    if color_order not in ("RGB", "BGR"):
        raise InputError(f"color order must be RGB or BGR, got {color_order!r}")
    height, width = image.shape[:2]
    # PIL's raw decoder swaps BGR to RGB while copying the pixels in (one pass, instead of a
    # numpy channel flip + contiguous copy + copy: ~4x faster on camera frames).
    return Image.frombuffer("RGB", (width, height), np.ascontiguousarray(image), "raw",
                            color_order, 0, 1)


def resize_crop(image: "np.ndarray | Image.Image", spec: ModelSpec,
                color_order: str = "RGB") -> np.ndarray:
    """Resize (+ centre crop) to the model resolution; returns uint8 HxWx3 RGB.

    This is all a fused-preprocessing graph needs from the host: it takes these pixels directly.
    """
    pil = _as_pil(image, color_order)
    width, height = pil.size
    new_w, new_h = resized_size(width, height, spec)
    size = spec.resolution
    left, top, right, bottom = crop_box(new_w, new_h, size)
    if (new_w, new_h) == (width, height):
        if (width, height) != (size, size):
            pil = pil.crop((left, top, right, bottom))
    else:
        # Resample only the crop: the source box is the crop's preimage at the resize scale, so
        # each output pixel has the same filter centre and support as resize-then-crop (equal
        # to within PIL's fixed-point rounding, one level at most) at ~60 % of the cost.
        sx, sy = width / new_w, height / new_h
        pil = pil.resize((size, size), _BILINEAR,
                         box=(left * sx, top * sy, right * sx, bottom * sy))
    return np.asarray(pil, dtype=np.uint8)


def _normalized(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 ...xHxWx3 RGB -> float32 in the same layout, scaled to 0..1 and normalised."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    return (pixels.astype(np.float32) - mean) * inv_std


def normalize(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 HxWx3 RGB (or NxHxWx3) -> float32 CHW (or NCHW), scaled to 0..1 and normalised."""
    axes = (2, 0, 1) if pixels.ndim == 3 else (0, 3, 1, 2)
    return np.ascontiguousarray(_normalized(pixels, spec).transpose(axes))


def preprocess(image: "np.ndarray | Image.Image", spec: ModelSpec,
               color_order: str = "RGB") -> np.ndarray:
    """One image -> float32 3xHxW network input, torchvision-identical."""
    return normalize(resize_crop(image, spec, color_order), spec)


def preprocess_batch(images: Sequence["np.ndarray | Image.Image"], spec: ModelSpec,
                     color_order: str = "RGB", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Images (in ``color_order``) -> the batch the model's input takes, as its spec says.

    A fused-preprocessing model takes raw uint8 pixels, any other model normalised float32;
    either way in the spec's ``color_order`` and ``layout`` (the exporter's graphs: uint8 NHWC
    frames when fused, float RGB NCHW otherwise). ``out``: write into this array instead
    (a backend's ``input_buffer``, so no batch is allocated and copied again); returned.
    """
    if len(images) == 0:
        raise InputError("cannot preprocess an empty batch")
    pixels = np.stack([resize_crop(img, spec, color_order) for img in images])
    if out is not None:
        return _into(out, pixels, spec)
    if not spec.fused_preprocessing and spec.color_order == "RGB" and spec.layout == "NCHW":
        return normalize(pixels, spec)
    return np.ascontiguousarray(_arranged(pixels, spec))


def _arranged(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 NxHxWx3 RGB pixels as the spec's input (normalised unless fused, colour order,
    layout), as a view where it can be."""
    batch = pixels if spec.fused_preprocessing else _normalized(pixels, spec)
    if spec.color_order == "BGR":
        batch = batch[:, :, :, ::-1]
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return batch


def _into(out: np.ndarray, pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """:func:`preprocess_batch` into ``out``: the plain float32 NCHW case is computed in
    place (same arithmetic as :func:`normalize`, no temporary batch), others are copied in."""
    shape = spec.input_shape(len(pixels))
    if out.shape != shape:
        raise InputError(f"out has shape {out.shape}; {len(pixels)} images for this model "
                         f"need {shape}")
    if not spec.fused_preprocessing and spec.color_order == "RGB" and spec.layout == "NCHW" \
            and out.dtype == np.float32:
        mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1) * 255.0
        inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1) * 255.0)
        np.subtract(pixels.transpose(0, 3, 1, 2), mean, out=out)
        np.multiply(out, inv_std, out=out)
        return out
    batch = _arranged(pixels, spec)
    if not np.can_cast(batch.dtype, out.dtype, "same_kind"):
        what = " (a model with preprocessing fused in-graph takes uint8 pixels)" \
            if out.dtype == np.uint8 else ""
        raise InputError(f"out is {out.dtype}{what} but this spec makes {batch.dtype} input; "
                         "preprocess with the model's own spec")
    np.copyto(out, batch, casting="same_kind")
    return out
