"""URI parsing and sources: every scheme maps to the right kind; failures name the fix."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from PIL import Image

from edge_resnet.core import DependencyError, InputError, SourceError
from edge_resnet.runtime.capture import Backoff, CaptureThread
from edge_resnet.runtime.telemetry import PipelineMetrics
from edge_resnet.runtime.sources import (CvSource, ImageSequenceSource, SourceOptions,
                                         create_source, csi_pipeline, gstreamer_available,
                                         parse_uri)
from media import write_video


@pytest.mark.parametrize("uri,kind,location", [
    ("csi://0", "csi", "0"),
    ("v4l2:///dev/video0", "v4l2", "/dev/video0"),
    ("/dev/video1", "v4l2", "/dev/video1"),
    ("2", "v4l2", "2"),
    ("rtsp://10.0.0.2:8554/cam", "rtsp", "rtsp://10.0.0.2:8554/cam"),
    ("http://127.0.0.1:8080/stream.mjpg", "http", "http://127.0.0.1:8080/stream.mjpg"),
    ("gst://videotestsrc ! appsink", "gst", "videotestsrc ! appsink"),
])
def test_parse_uri_kinds(uri: str, kind: str, location: str) -> None:
    parsed = parse_uri(uri)
    assert (parsed.kind, parsed.location) == (kind, location)
    assert parsed.live


def test_parse_local_paths(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    video.write_bytes(b"x")
    assert parse_uri(str(video)).kind == "file"
    assert parse_uri(f"file://{video}").location == str(video)
    assert not parse_uri(str(video)).live
    assert parse_uri(str(tmp_path)).kind == "images"
    assert parse_uri(str(tmp_path / "*.png")).kind == "images"


@pytest.mark.parametrize("uri,match", [
    ("ftp://host/x", "unknown source scheme"),
    ("csi://front", "sensor index"),
    ("", "empty source"),
])
def test_bad_uris(uri: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_uri(uri)


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        parse_uri(str(tmp_path / "nope.mp4"))


def test_csi_needs_gstreamer() -> None:
    source = create_source("csi://0", SourceOptions(width=1920, height=1080, fps=30))
    pipeline = csi_pipeline(0, source.options)
    assert "nvarguscamerasrc sensor-id=0" in pipeline and "width=1920" in pipeline
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the refusal path cannot be exercised")
    with pytest.raises(DependencyError, match="GStreamer"):
        source.open()


def test_unopenable_video_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.RandomState(0).bytes(20000))
    source = create_source(str(bad))
    with pytest.raises(SourceError, match="cannot open source"):
        source.open()


def test_video_file_source_reads_every_frame(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    path = write_video(tmp_path / "v.avi", frames, fps=12)
    source = create_source(str(path))
    assert isinstance(source, CvSource)
    source.open()
    got = []
    while (frame := source.read()) is not None:
        got.append(frame)
    source.close()
    assert len(got) == 12 and got[0].shape == (48, 64, 3)
    means = [float(f.mean()) for f in got]
    assert means == sorted(means) and abs(means[5] - 50) < 3


def _image_dir(tmp_path: Path, n: int, corrupt: int = -1) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        path = folder / f"{i:03d}.png"
        if i == corrupt:
            path.write_bytes(b"\x89PNG not really")
        else:
            Image.new("RGB", (20, 10), (i * 20, 0, 255)).save(path)
    return folder


def test_image_folder_source_is_bgr_and_ordered(tmp_path: Path) -> None:
    source = create_source(str(_image_dir(tmp_path, 3)))
    assert isinstance(source, ImageSequenceSource)
    source.open()
    frames = [source.read() for _ in range(3)]
    assert source.read() is None
    assert [int(f[0, 0, 2]) for f in frames] == [0, 20, 40]   # red channel last (BGR)
    assert all(int(f[0, 0, 0]) == 255 for f in frames)        # blue first


def _captured(source: Any, metrics: PipelineMetrics, capacity: int) -> List[Any]:
    """Open ``source``, capture it to the end on a CaptureThread, return the frames queued."""
    source.open()
    capture = CaptureThread(source, metrics, capacity=capacity)
    capture.start()
    capture.join(10)
    frames = []
    while (f := capture.channel.get(0.1)) is not None:
        frames.append(f)
    return frames


def test_capture_counts_corrupt_images_and_goes_on(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    metrics = PipelineMetrics()
    frames = _captured(create_source(str(_image_dir(tmp_path, 5, corrupt=2))), metrics, 8)
    counts = metrics.counts()
    assert (counts["captured"], counts["corrupt"], len(frames)) == (4, 1, 4)
    assert "002.png" in caplog.text and "unreadable frame" in caplog.text
    assert [f.index for f in frames] == [0, 1, 2, 3]


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    with pytest.raises(SourceError, match="no images"):
        create_source(str(tmp_path / "e")).open()


def test_live_channel_keeps_newest_and_counts_drops(tmp_path: Path) -> None:
    """A realtime (paced) file behaves live: unconsumed frames are replaced and counted."""
    frames = [np.full((32, 32, 3), i, np.uint8) for i in range(30)]
    path = write_video(tmp_path / "fast.avi", frames, fps=300)
    metrics = PipelineMetrics()
    source = create_source(str(path), SourceOptions(realtime=True))
    source.open()
    capture = CaptureThread(source, metrics)
    assert capture.channel.latest_only
    capture.start()
    capture.join(10)                      # nobody consumed: only the newest frame remains
    last = capture.channel.get(0.1)
    counts = metrics.counts()
    assert last is not None and last.index == 29
    assert counts["captured"] == 30 and counts["dropped"] == 29


def test_loop_replays_the_file(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), i * 8, np.uint8) for i in range(6)]
    path = write_video(tmp_path / "loop.avi", frames, fps=25)
    got = [f.index for f in _captured(create_source(str(path), SourceOptions(loop=2)),
                                      PipelineMetrics(), 64)]
    assert got == list(range(18))


def test_backoff_doubles_to_the_cap() -> None:
    b = Backoff(initial=0.5, maximum=3.0)
    assert [b.delay(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_reconnect_gives_up_after_attempts(tmp_path: Path) -> None:
    """A live source that never comes back ends capture with a SourceError after N attempts."""
    metrics = PipelineMetrics()
    source = create_source("http://127.0.0.1:9/none.mjpg")   # port 9: nothing listens
    stop = threading.Event()
    capture = CaptureThread(source, metrics, backoff=Backoff(0.01, 0.02, attempts=3),
                            stop_event=stop)
    capture.start()                        # never opened: read() fails, then reconnects
    capture.join(30)
    assert isinstance(capture.error, SourceError)
    assert "did not come back after 3 reconnect attempts" in str(capture.error)


def test_corrupt_video_frame_is_skipped_and_counted(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Frame 20 of an MJPG AVI has its JPEG header destroyed: it is skipped with a warning
    naming it, counted as corrupt, and every other frame still arrives in order."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(40)]
    path = write_video(tmp_path / "c.avi", frames, fps=25)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == 40
    data[starts[20]:starts[20] + 200] = bytes(200)
    path.write_bytes(bytes(data))
    metrics = PipelineMetrics()
    levels = [int(round(float(f.image.mean()) / 5))
              for f in _captured(create_source(str(path)), metrics, 64)]
    counts = metrics.counts()
    assert (counts["captured"], counts["corrupt"]) == (39, 1)
    assert levels == [i for i in range(40) if i != 20]
    assert "decoding failed at frame 20 of 40" in caplog.text
