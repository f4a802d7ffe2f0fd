"""The GPU kernels' filter plan, checked on the CPU against Pillow (the reference resize).

``apply_plan`` is the numpy statement of what the two kernels compute; if it matches
``preprocessing.resize_crop`` here, a kernel that matches ``apply_plan`` matches the reference.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest
from skimage import data

from edge_resnet.core import InputError, ModelSpec
from edge_resnet.cuda.resample_plan import apply_plan, make_plan
from edge_resnet.preprocessing import resize_crop

LABELS = ("a", "b")
SPECS = [ModelSpec(labels=LABELS), ModelSpec(labels=LABELS, resize=232),
         ModelSpec(labels=LABELS, resolution=32, resize=None),
         ModelSpec(labels=LABELS, resolution=64, resize=64)]


def _images() -> List[Tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    photos = [(name, getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee")]
    noise = [(f"noise{h}x{w}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
             for h, w in ((1080, 1920), (480, 640), (32, 32), (100, 64), (200, 150), (256, 256))]
    return photos + noise


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.resolution}-{s.resize}")
def test_plan_reproduces_pillow_within_one_level(spec: ModelSpec) -> None:
    exact = total = 0
    for name, image in _images():
        plan = make_plan(image.shape[0], image.shape[1], spec)
        ours = apply_plan(image, plan).astype(np.int16)
        ref = resize_crop(image, spec).astype(np.int16)
        assert ours.shape == ref.shape == (spec.resolution, spec.resolution, 3)
        assert np.abs(ours - ref).max() <= 1, name
        exact += int((ours == ref).sum())
        total += ours.size
    # the same fixed-point weights and rounding as Pillow: almost every value is identical
    assert exact / total > 0.95


def test_region_is_the_crop_preimage() -> None:
    spec = SPECS[0]
    plan = make_plan(1080, 1920, spec)
    x0, y0, x1, y1 = plan.region
    # 1920x1080 -> 455x256, centre crop 224: the crop's preimage is ~945 px square, centred
    assert 0 < x0 < 1920 // 2 < x1 < 1920 and 0 < y0 < y1 < 1080
    assert abs((x1 - x0) - 224 * 1080 / 256) < 12 and abs((y1 - y0) - 224 * 1080 / 256) < 12
    # pixels outside the region cannot change the output
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    before = resize_crop(image, spec)
    image[:y0] = 0
    image[y1:] = 255
    image[:, :x0] = 7
    image[:, x1:] = 9
    assert np.array_equal(resize_crop(image, spec), before)


def test_crop_only_and_identity_plans_copy_pixels() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)
    spec = ModelSpec(labels=LABELS, resolution=224, resize=256)  # short side already 256
    assert np.array_equal(apply_plan(image, make_plan(256, 300, spec)), image[16:240, 38:262])
    small = ModelSpec(labels=LABELS, resolution=32, resize=None)
    square = image[:32, :32]
    assert np.array_equal(apply_plan(square, make_plan(32, 32, small)), square)


def test_empty_image_is_refused() -> None:
    with pytest.raises(InputError, match="empty"):
        make_plan(0, 10, SPECS[0])
