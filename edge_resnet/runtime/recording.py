"""Annotated recordings that stay playable after kill -9 or power loss.

A classic MP4 writes its index (``moov``) at close: a killed writer leaves a file no player
opens. So ``.mp4``/``.mov`` are written as *fragmented* MP4 (``empty_moov`` + a fragment per
keyframe, one keyframe a second) by an ``ffmpeg`` child process fed raw BGR frames on a pipe;
when the runtime dies, ffmpeg sees the pipe close and finishes the file, and even if ffmpeg is
killed too, every complete fragment plays. OpenCV cannot do this (its writer options reach the
codec, not the muxer). ``.mkv`` (Matroska) and ``.avi`` go through OpenCV's writer: both
containers play without their closing index, losing at most FFmpeg's unflushed write buffer.
Device side: Python 3.8, no torch; OpenCV imported when a frame is written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import IO, Any, List, Optional

import numpy as np

from edge_resnet.core import DependencyError, SourceError

__all__ = ["FragmentedMp4Writer", "CvWriter", "FRAGMENTED_SUFFIXES", "CV_CODECS"]

FRAGMENTED_SUFFIXES = (".mp4", ".mov", ".m4v")
CV_CODECS = {".mkv": "mp4v", ".avi": "MJPG"}


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise DependencyError(
            "a crash-safe .mp4 recording needs the ffmpeg program (Debian/JetPack: "
            "`apt-get install ffmpeg`); or record to .mkv or .avi, which OpenCV writes "
            "crash-safe by itself")
    return path


def _encoder(ffmpeg: str) -> List[str]:
    """H.264 (libx264, low latency) when this ffmpeg has it, else MPEG-4 part 2."""
    listed = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True,
                            text=True, timeout=30).stdout
    if " libx264 " in listed:
        return ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
                "-pix_fmt", "yuv420p"]
    return ["-c:v", "mpeg4", "-q:v", "4", "-pix_fmt", "yuv420p"]


class FragmentedMp4Writer:
    """Raw BGR frames → ``ffmpeg`` → fragmented MP4 (a fragment per 1 s keyframe)."""

    def __init__(self, path: Path, fps: float, size: "tuple[int, int]") -> None:
        ffmpeg = _ffmpeg()
        width, height = size
        gop = max(1, int(round(fps)))
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
               "-r", f"{fps:.6g}", "-i", "pipe:0", "-an",
               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", *_encoder(ffmpeg),
               "-g", str(gop), "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
               "-f", "mp4", str(path)]
        self.path = path
        self.size = size
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            raise SourceError(f"recording {self.path}: frame size changed from "
                              f"{self.size[0]}x{self.size[1]} to {image.shape[1]}x"
                              f"{image.shape[0]}; record each camera mode to its own file")
        try:
            self._stdin.write(np.ascontiguousarray(image).tobytes())
        except BrokenPipeError as exc:
            raise SourceError(f"recording {self.path}: ffmpeg stopped: "
                              f"{self._error_text()}") from exc

    def _error_text(self) -> str:
        self._proc.wait(10)
        err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        return err.strip().splitlines()[-1] if err.strip() else f"exit {self._proc.returncode}"

    def release(self) -> None:
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass
        if self._proc.wait(60) != 0:
            raise SourceError(f"recording {self.path}: ffmpeg failed: {self._error_text()}")


class CvWriter:
    """OpenCV's VideoWriter for Matroska (``mp4v``) and AVI (``MJPG``)."""

    def __init__(self, path: Path, fps: float, size: "tuple[int, int]", codec: str) -> None:
        import cv2

        self.path = path
        self._writer: Any = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG,
                                            cv2.VideoWriter.fourcc(*codec), fps, size)
        if not self._writer.isOpened():
            raise SourceError(f"cannot write video {path} with codec {codec}")

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)

    def release(self) -> None:
        self._writer.release()


def open_writer(path: Path, fps: float, size: "tuple[int, int]") -> "FragmentedMp4Writer | CvWriter":
    """The crash-safe writer for ``path``'s container."""
    suffix = path.suffix.lower()
    if suffix in FRAGMENTED_SUFFIXES:
        return FragmentedMp4Writer(path, fps, size)
    return CvWriter(path, fps, size, CV_CODECS[suffix])


def check_recording_target(path: Path) -> Optional[str]:
    """None when ``path`` has a recording container we write, else the error text."""
    suffix = path.suffix.lower()
    if suffix in FRAGMENTED_SUFFIXES:
        _ffmpeg()   # refuse now (at start), not at the first frame
        return None
    if suffix in CV_CODECS:
        return None
    return f"video output {path}: use one of {sorted(FRAGMENTED_SUFFIXES + tuple(CV_CODECS))}"
