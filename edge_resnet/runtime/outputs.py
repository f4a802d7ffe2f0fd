"""Result outputs chosen by URI, mirroring the sources: JSON Lines, annotated video, a window.

``-`` / ``stdout`` / ``*.jsonl`` / ``file://x.jsonl`` → JSON Lines events, one complete line per
frame, flushed at once (a killed service leaves only whole lines); ``*.mp4`` / ``*.mkv`` /
``*.avi`` → annotated video (label, probability, FPS drawn) that plays after a crash; ``display://0`` → an on-screen window, refused
where no display exists. Several outputs run at once. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import json
import os
import sys
from abc import ABC
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

import numpy as np

from edge_resnet.core import DependencyError, InputError
from edge_resnet.io_utils import ensure_parent
from edge_resnet.runtime.capture import Frame
from edge_resnet.runtime.postprocess import Classification
from edge_resnet.runtime.recording import (CV_CODECS, FRAGMENTED_SUFFIXES,
                                           check_recording_target, open_writer)

__all__ = ["Output", "JsonlOutput", "VideoOutput", "DisplayOutput", "create_output",
           "result_fields", "output_path"]

VIDEO_SUFFIXES = FRAGMENTED_SUFFIXES + tuple(CV_CODECS)


def output_path(target: str) -> Path:
    """``target`` as a Path whose parent folder exists (created if needed), or an
    :class:`InputError` naming what is in the way (a file where a folder must be, no
    permission) instead of an OSError traceback."""
    try:
        return ensure_parent(target)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in Path(target).parents if p.exists() and not p.is_dir()), None)
        raise InputError(f"cannot write output {target}: {blocker or exc.filename} is a file, "
                         "not a folder; choose another output path") from exc
    except PermissionError as exc:
        raise InputError(f"cannot write output {target}: no permission to create "
                         f"{exc.filename}; choose a writable path") from exc


def result_fields(frame: Frame, result: Classification, latency_ms: float) -> Dict[str, Any]:
    """The fields of one ``result`` event (the envelope comes from :class:`EventLog`)."""
    data: Dict[str, Any] = {
        "frame": frame.index, "label": result.label, "prob": round(result.prob, 6),
        "topk": [{"label": t["label"], "index": t["index"], "prob": round(t["prob"], 6)}
                 for t in result.topk],
        "latency_ms": round(latency_ms, 3),
    }
    if result.identity is not None:
        data["identity"] = result.identity
        data["similarity"] = round(float(result.similarity or 0.0), 6)
        data["candidate"] = result.candidate
        data["match_threshold"] = result.match_threshold
    if frame.path is not None:
        data["path"] = frame.path
    return data


class Output(ABC):
    """Base output: ``write`` gets frames with their result (video, windows), ``write_event``
    every stamped event (JSONL); ``close`` flushes. ``needs_frame`` keeps the pixels."""

    needs_frame = False

    def write(self, frame: Frame, result: Classification, latency_ms: float, fps: float) -> None:
        """One processed frame (outputs that draw on frames)."""

    def write_event(self, data: Dict[str, Any]) -> None:
        """One stamped event (outputs that log events)."""

    def close(self) -> None:
        pass


class JsonlOutput(Output):
    """One JSON object per line, written with one call and flushed, to stdout or a file.

    Files are appended to (a restarted service keeps its history); every run starts with a
    ``run_start`` event, so runs never silently run into each other.
    """

    def __init__(self, target: str) -> None:
        self._own = target not in ("-", "stdout")
        if self._own:
            self._fh: IO[str] = open(output_path(target), "a", encoding="utf-8")
        else:
            self._fh = sys.stdout
        self.target = target

    def write_event(self, data: Dict[str, Any]) -> None:
        self._fh.write(json.dumps(data) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        if self._own:
            os.fsync(self._fh.fileno())
            self._fh.close()


def annotate(image: np.ndarray, result: Classification, fps: float) -> np.ndarray:
    """Draw label, probability (or identity, similarity) and FPS on a copy of a BGR frame."""
    import cv2
    out = image.copy()
    if result.identity is not None:
        text = f"{result.identity} ({result.similarity or 0.0:.2f})"
    else:
        text = f"{result.label} {result.prob * 100:.1f}%"
    scale = max(0.5, out.shape[1] / 900.0)
    for line, y in ((text, 1.0), (f"{fps:.1f} FPS", 2.1)):
        org = (8, int(28 * scale * y))
        cv2.putText(out, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(out, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


class VideoOutput(Output):
    """Annotated frames at the source rate, in a container that survives a crash
    (fragmented MP4 through ffmpeg, or Matroska/AVI through OpenCV: see ``recording``)."""

    needs_frame = True

    def __init__(self, path: str, fps: Optional[float] = None) -> None:
        self.path = output_path(path)
        problem = check_recording_target(self.path)
        if problem is not None:
            raise InputError(problem)
        self.fps = fps if fps and fps > 0 else None   # None: the source's rate (set at start)
        self._writer: Any = None
        self.frames = 0

    def write(self, frame: Frame, result: Classification, latency_ms: float, fps: float) -> None:
        if self._writer is None:
            h, w = frame.image.shape[:2]
            self._writer = open_writer(self.path, self.fps or 30.0, (w, h))
        self._writer.write(annotate(frame.image, result, fps))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.release()


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class DisplayOutput(Output):
    """An OpenCV window; needs a display and an OpenCV with GUI support."""

    needs_frame = True

    def __init__(self, title: str = "edge-resnet") -> None:
        if not display_available():
            raise InputError("display:// output needs a display (DISPLAY/WAYLAND_DISPLAY unset); "
                             "write a video file or JSONL instead")
        self.title = title

    def write(self, frame: Frame, result: Classification, latency_ms: float, fps: float) -> None:
        import cv2
        try:
            cv2.imshow(self.title, annotate(frame.image, result, fps))
            cv2.waitKey(1)
        except cv2.error as exc:
            raise DependencyError(f"this OpenCV cannot open a window ({exc}); install an "
                                  "OpenCV with GUI support (not opencv-python-headless)") from exc

    def close(self) -> None:
        import cv2
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def create_output(uri: str, fps: Optional[float] = None) -> Output:
    """Pick an output from its URI (see module docstring)."""
    text = uri.strip()
    if text in ("-", "stdout", "jsonl://-", "jsonl://stdout"):
        return JsonlOutput("-")
    if text.startswith("display://"):
        return DisplayOutput()
    location = text[len("file://"):] if text.startswith("file://") else text
    if location.startswith("jsonl://"):
        location = location[len("jsonl://"):]
        return JsonlOutput(location)
    suffix = Path(location).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return JsonlOutput(location)
    if suffix in VIDEO_SUFFIXES:
        return VideoOutput(location, fps)
    raise InputError(f"unknown output {uri!r}; use - (JSONL on stdout), out.jsonl, out.mp4, "
                     "out.mkv, out.avi or display://0")


def close_all(outputs: List[Output]) -> None:
    """Close every output even if one fails; re-raise the first failure."""
    first: Optional[BaseException] = None
    for out in outputs:
        try:
            out.close()
        except Exception as exc:  # keep flushing the others
            first = first or exc
    if first is not None:
        raise first
