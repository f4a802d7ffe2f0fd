"""Calibration readers: folder sampling, video frames, list files, skipped files, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from PIL import Image

from edge_resnet.calibration.readers import (ImageFolderReader, ListFileReader, ReaderOptions,
                                             VideoReader, open_reader)
from edge_resnet.core import DataError, InputError, ModelSpec

SPEC = ModelSpec(labels=tuple(str(i) for i in range(10)), resolution=32, resize=None)


def _collect(reader: Any) -> np.ndarray:
    return np.concatenate(list(reader))


def test_folder_sampling_is_deterministic_and_recursive(digits_dirs: Any) -> None:
    opts = ReaderOptions(num_images=40, seed=3, batch_size=16)
    first = _collect(ImageFolderReader(digits_dirs.train_dir, SPEC, opts))
    again = _collect(ImageFolderReader(digits_dirs.train_dir, SPEC, opts))
    other = _collect(ImageFolderReader(digits_dirs.train_dir, SPEC,
                                       ReaderOptions(num_images=40, seed=4, batch_size=16)))
    assert first.shape == (40, 3, 32, 32) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_batches_have_the_requested_size(digits_dirs: Any) -> None:
    reader = ImageFolderReader(digits_dirs.test_dir, SPEC, ReaderOptions(num_images=37,
                                                                         batch_size=16))
    sizes = [len(b) for b in reader]
    assert sizes == [16, 16, 5] and reader.images_used == 37 and reader.skips.count == 0


def _folder_with_bad_files(root: Path, good: int) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(good):
        Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(root / "sub" / f"{i}.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def test_bad_files_are_skipped_and_counted(tmp_path: Path) -> None:
    reader = open_reader(_folder_with_bad_files(tmp_path / "data", 5), SPEC,
                         ReaderOptions(batch_size=4))
    batches = list(reader)
    assert [len(b) for b in batches] == [4, 1]
    assert reader.images_used == 5 and reader.skips.count == 3
    assert any("corrupt.png" in k for k in reader.skips.skipped)


def test_folder_without_usable_image_is_a_clear_error(tmp_path: Path) -> None:
    root = _folder_with_bad_files(tmp_path / "data", 0)
    with pytest.raises(DataError, match="no usable image .*3 file"):
        list(open_reader(root, SPEC))


def test_zero_images_is_refused() -> None:
    with pytest.raises(InputError, match="num_images must be a positive number, got 0"):
        ReaderOptions(num_images=0)


def test_video_frames_with_stride(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    assert writer.isOpened()
    for i in range(20):
        writer.write(np.full((40, 48, 3), (10 * i, 0, 255 - 10 * i), np.uint8))
    writer.release()
    reader = open_reader(path, SPEC, ReaderOptions(batch_size=8, frame_stride=3))
    assert isinstance(reader, VideoReader) and reader.expected_images() == 7
    frames = _collect(reader)
    assert frames.shape == (7, 3, 32, 32) and reader.images_used == 7
    # OpenCV frames are BGR: frame 0 was written as (B, G, R) = (0, 0, 255), i.e. red, so
    # after conversion the model's channel 0 (R) is high and channel 2 (B) low.
    assert frames[0, 0].mean() > 2.0 > -1.5 > frames[0, 2].mean()
    limited = open_reader(path, SPEC, ReaderOptions(num_images=3, frame_stride=2))
    assert len(_collect(limited)) == 3


def test_unreadable_video_is_an_error(tmp_path: Path) -> None:
    from edge_resnet.core import SourceError

    path = tmp_path / "broken.mp4"
    path.write_bytes(b"no video here")
    with pytest.raises(SourceError, match="cannot open source .*broken.mp4 is not a video"):
        open_reader(path, SPEC)


def test_list_file_relative_paths_missing_counted(tmp_path: Path, digits_dirs: Any) -> None:
    files: List[Path] = sorted(Path(digits_dirs.test_dir).rglob("*.png"))[:6]
    lines = ["# calibration list", *(str(f) for f in files[:5]), "missing/none.png", ""]
    Image.open(files[5]).save(tmp_path / "local.png")
    lines.append("local.png")
    listing = tmp_path / "calib.txt"
    listing.write_text("\n".join(lines))
    reader = open_reader(listing, SPEC, ReaderOptions(batch_size=4))
    assert isinstance(reader, ListFileReader)
    assert len(_collect(reader)) == 6 and reader.skips.count == 1
    sampled = open_reader(listing, SPEC, ReaderOptions(num_images=3, seed=1))
    assert len(_collect(sampled)) <= 3


def test_unknown_source_kind_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell what"):
        open_reader(odd, SPEC)
    with pytest.raises(InputError, match="does not exist"):
        open_reader(tmp_path / "nope", SPEC)
