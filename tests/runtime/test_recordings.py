"""Annotated recordings survive kill -9: fragmented MP4 (ffmpeg) and Matroska (OpenCV) are
playable afterwards, and ffprobe counts the frames that made it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from edge_resnet.core import DependencyError, InputError
from edge_resnet.runtime.outputs import VideoOutput, create_output
from edge_resnet.runtime.recording import FragmentedMp4Writer


def _ffprobe_frames(path: Path) -> int:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("needs ffprobe (Debian package ffmpeg: apt-get install ffmpeg)")
    done = subprocess.run([ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
                           "-show_entries", "stream=nb_read_frames,width,height", "-of",
                           "json", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"{path.name} is not playable: {done.stderr[-500:]}"
    stream = json.loads(done.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (640, 480)
    return int(stream["nb_read_frames"])


def _results(path: Path) -> int:
    return path.read_text().count('"type": "result"') if path.exists() else 0


@pytest.fixture()
def needs_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (Debian package ffmpeg: apt-get install ffmpeg)")


def test_recordings_play_after_kill_9(needs_ffmpeg: None, digits_onnx: Path,
                                      digits_video: Tuple[Path, list], tmp_path: Path) -> None:
    video, _ = digits_video
    mp4, mkv, events = tmp_path / "out.mp4", tmp_path / "out.mkv", tmp_path / "e.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_resnet.cli", "run", str(digits_onnx),
                             str(video), str(mp4), str(mkv), str(events), "--loop", "-1",
                             "--threads", "2", "--stats-interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _results(events) < 120:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "too slow: fewer than 120 results in 120 s"
            time.sleep(0.1)
        before = _results(events)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.0)                 # ffmpeg sees its pipe close and writes the last fragment
    after = _results(events)
    mp4_frames, mkv_frames = _ffprobe_frames(mp4), _ffprobe_frames(mkv)
    print(f"results before/after kill {before}/{after}; mp4 {mp4_frames}, mkv {mkv_frames}")
    # each frame's result is logged before it is drawn: at most one frame in the air
    assert before - 1 <= mp4_frames <= after, (before, mp4_frames, after)
    # Matroska through OpenCV: everything but FFmpeg's unflushed write buffer (256 KiB)
    assert 0 < mkv_frames <= after and mkv_frames >= before - 100, (before, mkv_frames, after)


def test_fragmented_writer_round_trip(needs_ffmpeg: None, tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    writer = FragmentedMp4Writer(path, 25.0, (640, 480))
    for i in range(30):
        writer.write(np.full((480, 640, 3), i * 8, np.uint8))
    with pytest.raises(Exception, match="frame size changed"):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    assert _ffprobe_frames(path) == 30


def test_mp4_without_ffmpeg_is_refused_with_the_fix(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(DependencyError, match="apt-get install ffmpeg.*or record to .mkv"):
        VideoOutput(str(tmp_path / "x.mp4"))
    assert isinstance(create_output(str(tmp_path / "x.mkv")), VideoOutput)   # no ffmpeg needed
    with pytest.raises(InputError, match="unknown output"):
        create_output(str(tmp_path / "x.webm"))
