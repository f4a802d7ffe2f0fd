"""edge_resnet.preprocessing reproduces torchvision's PIL-path transforms on real photos.

The model was trained with torchvision transforms; every stage feeds it through
``edge_resnet.preprocessing``, so the two must agree to within one 8-bit level.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest

from edge_resnet.core import IMAGENET_MEAN, IMAGENET_STD, InputError, ModelSpec
from edge_resnet.preprocessing import preprocess, preprocess_batch, resize_crop

skdata = pytest.importorskip("skimage.data")
transforms = pytest.importorskip("torchvision.transforms")
Image = pytest.importorskip("PIL.Image")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # 512x512, 400x600, 300x451, 427x640
ONE_LEVEL = 1.0 / 255.0
_STD = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def _photo(name: str) -> np.ndarray:
    image = getattr(skdata, name)()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return image


def _torchvision(image: np.ndarray, resolution: int, resize: Optional[int]) -> np.ndarray:
    steps: list[Any] = ([transforms.Resize(resize), transforms.CenterCrop(resolution)]
                        if resize is not None else [transforms.Resize((resolution, resolution))])
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    tensor = transforms.Compose(steps)(Image.fromarray(image))
    return np.asarray(tensor.numpy(), dtype=np.float32)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("resolution,resize", [(224, 256), (224, None), (160, 183)])
def test_matches_torchvision_within_one_level(name: str, resolution: int,
                                              resize: Optional[int]) -> None:
    image = _photo(name)
    spec = ModelSpec(labels=("a", "b"), resolution=resolution, resize=resize)
    ours = preprocess(image, spec)
    reference = _torchvision(image, resolution, resize)
    assert ours.shape == reference.shape == (3, resolution, resolution)
    assert ours.dtype == np.float32
    # Undo the std scaling so the bound is in 0..1 pixel units (plus float32 rounding).
    diff = np.abs(ours - reference) * _STD
    assert float(np.max(diff)) <= ONE_LEVEL + 1e-6
    # The crop-only resample differs from resize-then-crop by PIL's fixed-point rounding: one
    # level on about 1 % of the values at most (measured 0-0.9 % on these photos), never more.
    assert float(np.mean(diff > ONE_LEVEL / 2)) < 0.02


@pytest.mark.parametrize("name", ("coffee", "rocket"))
def test_bgr_input_gives_the_same_tensor(name: str) -> None:
    image = _photo(name)
    spec = ModelSpec(labels=("a", "b"))
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    np.testing.assert_array_equal(preprocess(bgr, spec, color_order="BGR"),
                                  preprocess(image, spec))
    # Feeding BGR as if it were RGB changes the tensor: the colour order matters.
    assert float(np.max(np.abs(preprocess(bgr, spec) - preprocess(image, spec)))) > 0.5


@pytest.mark.parametrize("order", ("BGR", "RGB"))
def test_fused_path_gives_uint8_frames_in_graph_order(order: str) -> None:
    images = [_photo(n) for n in PHOTOS]
    spec = ModelSpec(labels=("a", "b"))
    fused = spec.with_changes(fused_preprocessing=True, color_order=order, layout="NHWC")
    frames = preprocess_batch(images, fused)
    assert frames.dtype == np.uint8 and frames.shape == (4, 224, 224, 3)
    rgb = frames[:, :, :, ::-1] if order == "BGR" else frames
    np.testing.assert_array_equal(rgb, np.stack([resize_crop(img, spec) for img in images]))
    # Normalising the frames the way the fused graph does gives the unfused batch exactly.
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    in_graph = ((rgb.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(in_graph, preprocess_batch(images, spec))


def test_rejects_non_rgb_arrays() -> None:
    spec = ModelSpec(labels=("a", "b"))
    with pytest.raises(InputError, match="HxWx3"):
        preprocess(np.zeros((32, 32), dtype=np.uint8), spec)
    with pytest.raises(InputError, match="uint8"):
        preprocess(np.zeros((32, 32, 3), dtype=np.float32), spec)
    with pytest.raises(InputError, match="empty batch"):
        preprocess_batch([], spec)
