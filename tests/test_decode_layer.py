"""The one decode layer: stills (edge_resnet.images) and video files (runtime.sources) decode;
calibration readers, evaluation, finetune and the runtime's sources only adapt them, so every
adapter sees the same pixels in the same order and skips and counts the same bad files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from PIL import Image

from edge_resnet.calibration import readers
from edge_resnet.calibration.options import ReaderOptions
from edge_resnet.core import DataError, InputError, ModelSpec
from edge_resnet.images import (ImageFolder, ImageRecord, SkipCounter, chunked, decoded_chunks,
                                image_files, iter_decoded, read_image)
from edge_resnet.preprocessing import preprocess_batch, resize_crop
from edge_resnet.runtime import sources
from edge_resnet.runtime.sources import (CvSource, ImageSequenceSource, create_source,
                                         video_frame_count, video_frames)

SPEC = ModelSpec(labels=tuple(str(i) for i in range(10)), resolution=24, resize=28)


def _write_video(path: Path, count: int) -> Path:
    """Random-noise frames (each frame distinct), MJPG: what a camera clip looks like."""
    import cv2

    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (40, 30))
    assert writer.isOpened()
    for _ in range(count):
        writer.write(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    writer.release()
    return path


def _source_frames(source: Any) -> List[np.ndarray]:
    """Every frame a runtime source delivers (BGR), as the capture loop reads them."""
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_one_video_extension_list(tmp_path: Path) -> None:
    assert readers.VIDEO_EXTENSIONS is sources.VIDEO_EXTENSIONS
    clip = _write_video(tmp_path / "clip.avi", 5)
    # .ts was known to the runtime only; calibration now takes every extension the runtime does
    ts = tmp_path / "clip.ts"
    ts.write_bytes(clip.read_bytes())
    reader = readers.open_reader(ts, SPEC, ReaderOptions(batch_size=2))
    assert isinstance(reader, readers.VideoReader)
    expected = preprocess_batch(list(video_frames(clip)), SPEC)
    np.testing.assert_array_equal(np.concatenate(list(reader)), expected)


def test_runtime_sources_and_calibration_see_the_same_frames(tmp_path: Path) -> None:
    clip = _write_video(tmp_path / "clip.avi", 9)
    rgb = list(video_frames(clip))
    assert len(rgb) == 9 == video_frame_count(clip)
    assert all(f.dtype == np.uint8 and f.shape == (30, 40, 3) for f in rgb)
    assert not any(np.array_equal(a, b) for a, b in zip(rgb, rgb[1:]))
    # the runtime's file source delivers the same frames, BGR
    file_source = create_source(str(clip))
    assert isinstance(file_source, CvSource)
    bgr = _source_frames(file_source)
    assert len(bgr) == 9 and all(np.array_equal(b[:, :, ::-1], a) for a, b in zip(rgb, bgr))
    # the frames as a folder of PNGs: the image-sequence source gives them back, BGR
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(rgb):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    sequence = create_source(str(folder))
    assert isinstance(sequence, ImageSequenceSource)
    from_pngs = _source_frames(sequence)
    assert len(from_pngs) == 9
    assert all(np.array_equal(b[:, :, ::-1], a) for a, b in zip(rgb, from_pngs))
    # calibration: the video reader and the folder reader feed the model the same batches
    opts = ReaderOptions(batch_size=4)
    video_batches = list(readers.open_reader(clip, SPEC, opts))
    folder_batches = list(readers.open_reader(folder, SPEC, opts))
    assert [len(b) for b in video_batches] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(video_batches), preprocess_batch(rgb, SPEC))
    np.testing.assert_array_equal(np.concatenate(folder_batches), np.concatenate(video_batches))
    # stride and limit pick the same frames from the one frame iterator
    strided = readers.open_reader(clip, SPEC, ReaderOptions(frame_stride=2, num_images=3))
    assert strided.expected_images() == 3
    np.testing.assert_array_equal(np.concatenate(list(strided)),
                                  preprocess_batch(rgb[0:6:2], SPEC))


def test_video_stride_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="stride must be >= 1, got 0"):
        next(video_frames(_write_video(tmp_path / "clip.avi", 2), stride=0))


def _mixed_folder(root: Path) -> Path:
    """Six good images and two unreadable files sorted between them."""
    (root / "b").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (20 + i, 16), (40 * i, 255 - 40 * i, 9)).save(
            root / ("b" if i >= 3 else "") / f"{i}.png")
    (root / "2a-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "b" / "4a-empty.jpg").write_bytes(b"")
    return root


def test_one_folder_walk(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "data")
    (root / ".thumbs").mkdir()
    Image.new("RGB", (4, 4)).save(root / ".thumbs" / "t.png")
    (root / "notes.txt").write_text("not an image")
    walked = image_files(root)
    assert [p.name for p in walked] == ["0.png", "1.png", "2.png", "2a-corrupt.png", "3.png",
                                        "4.png", "4a-empty.jpg", "5.png"]
    # ImageFolder walks the same way (and lists the non-image file too, to count it)
    listed = [r.path for r in ImageFolder(root, labeled=False).records]
    assert [p for p in listed if p.suffix == ".png" or p.suffix == ".jpg"] == walked
    source = create_source(str(root))
    source.open()
    assert isinstance(source, ImageSequenceSource) and source.files == walked


def test_decode_iterator_skips_and_counts(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "data")
    records = [ImageRecord(p, i % 3) for i, p in enumerate(image_files(root))]
    skips = SkipCounter()
    decoded = list(iter_decoded(records, skips))
    assert [r.path.name for r, _ in decoded] == [f"{i}.png" for i in range(6)]
    assert all(np.array_equal(img, read_image(r.path)) for r, img in decoded)
    assert skips.count == 2
    assert [Path(p).name for p in skips.skipped] == ["2a-corrupt.png", "4a-empty.jpg"]
    assert "empty file (0 bytes)" in skips.skipped[str(root / "b" / "4a-empty.jpg")]
    # threads, a transform, chunks and read-ahead change nothing but the speed
    threaded = SkipCounter()
    small = list(iter_decoded(records, threaded, lambda im: resize_crop(im, SPEC), workers=3))
    assert threaded.skipped == skips.skipped
    assert all(np.array_equal(s, resize_crop(img, SPEC)) for (_, s), (_, img)
               in zip(small, decoded))
    for prefetch in (False, True):
        counted = SkipCounter()
        chunks = list(decoded_chunks(records, 4, counted, prefetch=prefetch))
        assert [len(c) for c in chunks] == [4, 2] and counted.skipped == skips.skipped
        assert [r for c in chunks for r, _ in c] == [r for r, _ in decoded]
    with pytest.raises(InputError, match="batch_size must be >= 1, got 0"):
        list(chunked(range(3), 0))


def test_threaded_decode_stopped_early_decodes_no_further(tmp_path: Path) -> None:
    """A consumer that stops (an error in a model, a limit) must not wait for the whole
    folder to be decoded: the queued decodes are cancelled, only the running ones finish."""
    import threading
    import time

    path = tmp_path / "one.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    records = [ImageRecord(path, None)] * 200
    calls = []
    lock = threading.Lock()

    def slow(image: np.ndarray) -> np.ndarray:
        with lock:
            calls.append(1)
        time.sleep(0.05)
        return image

    decoded = iter_decoded(records, SkipCounter(), slow, workers=2)
    assert next(decoded)[1].shape == (8, 8, 3)
    decoded.close()
    assert len(calls) <= 6  # the first, at most one more per worker, and a few in flight


def test_every_adapter_skips_and_counts_the_same_files(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "data")
    bad = {str(root / "2a-corrupt.png"), str(root / "b" / "4a-empty.jpg")}
    folder = ImageFolder(root, labeled=False)
    assert len(list(folder.iter_images())) == 6 and set(folder.skips.skipped) == bad
    reader = readers.open_reader(root, SPEC, ReaderOptions(batch_size=4))
    assert sum(len(b) for b in reader) == 6 and set(reader.skips.skipped) == bad
    listing = tmp_path / "calib.txt"
    listing.write_text("\n".join(str(p) for p in image_files(root)))
    from_list = readers.open_reader(listing, SPEC, ReaderOptions(batch_size=4))
    assert sum(len(b) for b in from_list) == 6 and from_list.skips.skipped == reader.skips.skipped
    records = [ImageRecord(p, 1) for p in image_files(root)]
    counted = SkipCounter()
    pairs = list(readers.records_reader(records, SPEC, batch_size=4, skips=counted))
    assert [len(y) for _, y in pairs] == [4, 2] and set(counted.skipped) == bad
    np.testing.assert_array_equal(np.concatenate([b for b, _ in pairs]),
                                  np.concatenate(list(reader)))


def test_evaluation_skips_and_counts(tmp_path: Path, digits_onnx: Path) -> None:
    from edge_resnet.backends import load_backend
    from edge_resnet.evaluation.evaluate import predict

    root = _mixed_folder(tmp_path / "data")
    records = [ImageRecord(p, None) for p in image_files(root)]
    with load_backend("onnxruntime", digits_onnx) as backend:
        result = predict(backend, records, batch_size=4)
        in_memory = predict(backend, [read_image(r.path) for r in records
                                      if str(r.path) not in result.skipped], batch_size=4)
    assert result.logits.shape == (6, backend.spec.num_classes)
    assert set(result.skipped) == {str(root / "2a-corrupt.png"),
                                   str(root / "b" / "4a-empty.jpg")}
    assert [Path(p).name for p in result.paths] == [f"{i}.png" for i in range(6)]
    assert in_memory.paths == [f"<image {i}>" for i in range(6)] and not in_memory.skipped
    np.testing.assert_array_equal(in_memory.logits, result.logits)


def test_finetune_pixels_skip_and_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("torch", reason="finetune is host-side and needs torch")
    from edge_resnet.training.finetune import _Pixels

    root = _mixed_folder(tmp_path / "data")
    records = [ImageRecord(p, i % 2) for i, p in enumerate(image_files(root))]
    with caplog.at_level(logging.WARNING, logger="edge_resnet.training.finetune"):
        cached = _Pixels(records, SPEC, cache=True, workers=2)
    assert len(cached) == 6 and cached.skipped == 2
    assert caplog.text.count("skipping") == 2 and "2a-corrupt.png" in caplog.text
    lazy = _Pixels(records, SPEC, cache=False)
    assert lazy.cached is None and lazy.skipped == 2
    assert lazy.labels.tolist() == cached.labels.tolist() == [0, 1, 0, 0, 1, 1]
    idx = np.arange(6)
    np.testing.assert_array_equal(lazy.batch(idx), cached.batch(idx))
    np.testing.assert_array_equal(
        cached.batch(idx), np.stack([resize_crop(read_image(r.path), SPEC)
                                     for r in cached.records]))


def test_image_sequence_source_names_the_corrupt_frame(tmp_path: Path) -> None:
    source = create_source(str(_mixed_folder(tmp_path / "data")))
    source.open()
    frames = [source.read() for _ in range(3)]
    with pytest.raises(DataError, match=r"corrupt frame 3: .*2a-corrupt.png: not a readable"):
        source.read()
    assert len(frames) == 3 and source.read() is not None  # the source goes on after it
