"""read_image and ImageFolder on the files found in the field: odd modes, broken files, splits."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
from PIL import Image

from edge_resnet.core import DataError, InputError
from edge_resnet.images import ImageFolder, _to_rgb_array, read_image


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _solid(path: Path, colour: Tuple[int, ...] = (10, 20, 30), mode: str = "RGB") -> Path:
    return _save(path, Image.new(mode, (4, 3), colour))


@pytest.mark.parametrize("mode, colour, expected", [
    ("RGB", (10, 20, 30), (10, 20, 30)),
    ("L", (77,), (77, 77, 77)),
    ("LA", (77, 5), (77, 77, 77)),
    ("RGBA", (200, 10, 10, 0), (200, 10, 10)),  # alpha dropped, colour kept
    ("1", (1,), (255, 255, 255)),
])
def test_modes_convert_to_rgb(tmp_path: Path, mode: str, colour: Tuple[int, ...],
                              expected: Tuple[int, int, int]) -> None:
    image = read_image(_solid(tmp_path / "x.png", colour, mode))
    assert image.dtype == np.uint8 and image.shape == (3, 4, 3)
    assert image[0, 0].tolist() == list(expected)


def test_palette_and_cmyk_jpeg(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 10, 200] + [0] * 762)
    assert read_image(_save(tmp_path / "p.png", palette))[0, 0].tolist() == [10, 10, 200]
    cmyk = read_image(_save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0))))
    assert cmyk.shape == (8, 8, 3) and cmyk.min() >= 250  # no ink = white


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    # 40000 / 65535 * 255 = 155.6 -> 156; 200 / 65535 * 255 = 0.78 -> 1 (dark, not clipped to 200)
    bright = _save(tmp_path / "b.png", Image.fromarray(np.full((4, 4), 40000, np.uint16)))
    dark = _save(tmp_path / "d.png", Image.fromarray(np.full((4, 4), 200, np.uint16)))
    assert read_image(bright)[0, 0].tolist() == [156, 156, 156]
    assert read_image(dark)[0, 0].tolist() == [1, 1, 1]


def test_16bit_png_read_as_mode_i_is_scaled(tmp_path: Path) -> None:
    # Older Pillow opens 16-bit PNGs as mode "I"; a PNG cannot hold 32-bit data, so scale by 65535.
    path = _save(tmp_path / "d.png", Image.fromarray(np.full((4, 4), 200, np.uint16)))
    with Image.open(path) as img:
        as_i = img.convert("I")
        as_i.format = "PNG"
    assert _to_rgb_array(as_i)[0, 0].tolist() == [1, 1, 1]
    # a 32-bit TIFF with 8-bit range values stays as is
    tif = _save(tmp_path / "i.tif", Image.fromarray(np.full((4, 4), 100, np.int32)))
    assert read_image(tif)[0, 0].tolist() == [100, 100, 100]


def test_float_images_in_unit_range(tmp_path: Path) -> None:
    path = _save(tmp_path / "f.tif", Image.fromarray(np.full((4, 4), 0.5, np.float32)))
    assert read_image(path)[0, 0].tolist() == [128, 128, 128]  # 0.5 * 255 = 127.5 -> 128


def test_16bit_rgb_png(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "rgb16.png"
    bgr = np.zeros((4, 4, 3), np.uint16)
    bgr[..., 2], bgr[..., 1], bgr[..., 0] = 65535, 30000, 1000
    assert cv2.imwrite(str(path), bgr)
    # Pillow keeps the high byte of each 16-bit RGB sample: 255, 30000 >> 8 = 117, 1000 >> 8 = 3
    assert read_image(path)[0, 0].tolist() == [255, 117, 3]


@pytest.mark.parametrize("name, content, match", [
    ("zero.png", b"", "empty file"),
    ("notes.txt", b"hello", "not a readable image"),
    ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "not a readable image"),
])
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_image(path)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    full = _save(tmp_path / "full.jpg", Image.new("RGB", (64, 64), (1, 2, 3))).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="cut.jpg: not a readable image"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_decompression_bomb_is_a_data_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _solid(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # 12 pixels > 2 * 5: Pillow refuses
    with pytest.raises(DataError, match="DecompressionBombError"):
        read_image(path)


@pytest.fixture()
def labeled(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    for cls, count in (("cat", 5), ("dog", 3), ("eel", 2)):
        for i in range(count):
            _solid(root / cls / f"{i}.png", (i, 0, 0))
    (root / "dog" / "broken.jpg").write_bytes(b"")
    (root / ".hidden").mkdir()
    (root / "cat" / ".DS_Store").write_bytes(b"x")
    return root


def test_labeled_folder_classes_and_skips(labeled: Path) -> None:
    folder = ImageFolder(labeled)
    assert folder.labeled and folder.classes == ("cat", "dog", "eel") and len(folder) == 11
    images = list(folder.iter_images())
    assert len(images) == 10 and folder.skips.count == 1
    assert list(folder.skips.skipped) == [str(labeled / "dog" / "broken.jpg")]
    assert [r.label for r, _ in images] == [0] * 5 + [1] * 3 + [2] * 2


def test_labels_follow_the_model_order(labeled: Path) -> None:
    folder = ImageFolder(labeled, labels=("eel", "dog", "cat", "fox"))
    assert folder.classes == ("eel", "dog", "cat", "fox")
    assert sorted({(r.path.parent.name, r.label) for r in folder.records}) == [
        ("cat", 2), ("dog", 1), ("eel", 0)]
    with pytest.raises(DataError, match=r"subfolders \['eel'\] are not among the model's labels"):
        ImageFolder(labeled, labels=("cat", "dog"))


def test_unlabeled_empty_and_missing(tmp_path: Path, labeled: Path) -> None:
    flat = tmp_path / "flat"
    _solid(flat / "a.png")
    _solid(flat / "b.png")
    folder = ImageFolder(flat)
    assert not folder.labeled and [r.label for r in folder.records] == [None, None]
    forced = ImageFolder(labeled, labeled=False)
    assert len(forced) == 11 and all(r.label is None for r in forced.records)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no files"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist or is not a directory"):
        ImageFolder(tmp_path / "nope")


def test_sampling_is_deterministic(labeled: Path) -> None:
    folder = ImageFolder(labeled)
    first = folder.sample(4, seed=7)
    assert first == folder.sample(4, seed=7) and len(first) == 4
    assert [str(r.path) for r in first] == sorted(str(r.path) for r in first)  # folder order
    seeds = {tuple(str(r.path) for r in folder.sample(4, seed=s)) for s in range(5)}
    assert len(seeds) > 1  # the seed matters
    assert folder.sample(None) == folder.records and len(folder.sample(100)) == 11
    with pytest.raises(InputError, match="must be positive"):
        folder.sample(0)


def test_stratified_split(labeled: Path) -> None:
    folder = ImageFolder(labeled)
    train, held = folder.split(0.4, seed=1)
    held_by_class = [sum(r.label == c for r in held) for c in range(3)]
    # round(5 * .4) = 2 cats, round(4 * .4) = 2 dogs (3 + broken file), round(2 * .4) = 1 eel
    assert held_by_class == [2, 2, 1]
    assert len(train) + len(held) == 11 and not set(train) & set(held)
    assert folder.split(0.4, seed=1) == (train, held)
    # a large fraction still leaves one image per class to train on
    train, held = folder.split(0.9, seed=0)
    assert sorted({r.label for r in train}) == [0, 1, 2]
    with pytest.raises(InputError, match=r"split fraction must be in \(0, 1\)"):
        folder.split(1.0)
