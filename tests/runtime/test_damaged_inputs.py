"""Inputs that used to break the runtime: a cut recording, a file as an output folder, a folder
as MODEL, and docs naming backends the CLI does not take."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import numpy as np
import pytest

from edge_resnet.backends.base import backend_names
from edge_resnet.cli import main
from edge_resnet.runtime.capture import CaptureThread
from edge_resnet.runtime.telemetry import PipelineMetrics
from edge_resnet.runtime.sources import create_source

DOCS = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"needs the {tool} binary (Debian package ffmpeg: apt-get install ffmpeg)")
    return path


def _faststart_mp4_cut_in_half(tmp_path: Path, frames: int = 500) -> Path:
    """H.264 mp4 with the index at the front (-movflags +faststart), cut at half its bytes:
    the index announces every frame, the data for the second half is gone."""
    full = tmp_path / "full.mp4"
    subprocess.run([_need("ffmpeg"), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=25", "-frames:v", str(frames), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(full)], check=True)
    data = full.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    return half


def _decodable_frames(path: Path) -> int:
    out = subprocess.run([_need("ffprobe"), "-v", "quiet", "-count_frames", "-select_streams",
                          "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0",
                          str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.strip().split(",")[0])


def test_cut_recording_never_yields_a_frame_twice(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Every frame handed on is one FFmpeg really decoded, each once (ffprobe agrees on the
    count), and the announced-but-undecodable rest is counted as lost, not made up."""
    half = _faststart_mp4_cut_in_half(tmp_path)
    expected = _decodable_frames(half)
    assert 0 < expected < 500
    metrics = PipelineMetrics()
    source = create_source(str(half))
    source.open()
    assert source.frame_count == 500
    capture = CaptureThread(source, metrics, capacity=1000)
    capture.start()
    capture.join(60)
    assert not capture.is_alive()
    images: List[np.ndarray] = []
    while (frame := capture.channel.get(0.1)) is not None:
        images.append(frame.image)
    digests = {img.tobytes() for img in images}
    assert len(images) == expected                  # exactly what ffprobe decodes
    assert len(digests) == len(images)              # testsrc frames all differ: no repeats
    counts = metrics.counts()
    assert counts["captured"] == expected
    assert counts["corrupt"] == 500 - expected      # every lost frame accounted for
    assert f"{500 - expected} of 500 frames could not be decoded" in caplog.text


def test_cut_recording_through_the_cli(digits_onnx: Path, tmp_path: Path) -> None:
    half = _faststart_mp4_cut_in_half(tmp_path, frames=100)
    out = tmp_path / "e.jsonl"
    assert main(["run", str(digits_onnx), str(half), str(out), "--stats-interval", "0",
                 "--threads", "2"]) == 0
    import json

    results = [e for e in map(json.loads, out.read_text().splitlines()) if e["type"] == "result"]
    end = json.loads(out.read_text().splitlines()[-1])
    assert len(results) == _decodable_frames(half)
    assert end["type"] == "run_end" and end["counts"]["corrupt"] == 100 - len(results)


def test_output_under_a_file_is_one_line(digits_onnx: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a_file").write_text("x")
    images = tmp_path / "imgs"
    images.mkdir()
    code = main(["run", str(digits_onnx), str(images), str(tmp_path / "a_file" / "out.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "a_file is a file, not a folder" in err and "Traceback" not in err


def test_folder_as_model_says_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(tmp_path), str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "is a folder; give the model file" in err and "does not exist" not in err


def _run_backend_choices() -> List[str]:
    """The --backend choices of `edge-resnet run`, read from the real parser."""
    import argparse

    from edge_resnet.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    return list(next(a for a in run._actions if "--backend" in a.option_strings).choices)


def test_docs_name_exactly_the_backends_the_cli_takes() -> None:
    text = DOCS.read_text()
    listed = re.search(r"--backend ([a-z|]+)`", text)
    assert listed is not None, "docs/runtime.md lost its --backend list"
    choices = _run_backend_choices()
    assert set(backend_names()) <= set(choices)
    assert sorted(listed.group(1).split("|")) == sorted(choices)
    for name in set(re.findall(r"--backend (\w+)", text)):
        assert name in choices, f"docs/runtime.md uses --backend {name}"


def test_ffmpeg_noise_is_off_by_default_and_back_with_v(digits_onnx: Path, tmp_path: Path) -> None:
    """FFmpeg's own ``[h264 @ 0x…]`` lines about the damage: none by default (our warning
    says what was lost), back on stderr with ``-v`` (also when the quiet default was inherited
    from a parent run); stdout keeps only JSONL either way."""
    import json
    import os
    import sys

    half = _faststart_mp4_cut_in_half(tmp_path, frames=100)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    inherited = {**clean, "OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR"}

    def ffmpeg_lines(env: dict, *flags: str) -> int:
        done = subprocess.run([sys.executable, "-m", "edge_resnet.cli", *flags, "run",
                               str(digits_onnx), str(half), "-", "--stats-interval", "0",
                               "--threads", "2"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "frames could not be decoded" in done.stderr
        assert all(json.loads(line)["schema"] for line in done.stdout.splitlines())
        return sum(1 for line in done.stderr.splitlines() if line.startswith("["))

    assert ffmpeg_lines(clean) == 0
    assert ffmpeg_lines(inherited, "-v") > 0
