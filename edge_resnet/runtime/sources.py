"""Capture sources chosen by URI, in the spirit of jetson-utils' ``videoSource::Create(uri)``.

``csi://0``, ``v4l2:///dev/video0``, ``/dev/video0``, ``0``, ``rtsp://…``, ``http(s)://…``,
``file://clip.mp4`` or a plain video path, a folder or glob of images, and ``gst://<pipeline>``.
A source only opens and reads frames (BGR uint8, as OpenCV gives them); threading, dropping and
reconnecting live in :mod:`edge_resnet.runtime.capture`, so every source gets them for free.
What a source is lives in :mod:`edge_resnet.runtime.source_base`; everything OpenCV opens
(cameras, streams, video files, and the SDK's one video-file reader :func:`video_frames`) in
:mod:`edge_resnet.runtime.cvsource`; this module parses URIs, reads image folders and globs
(decoded by :mod:`edge_resnet.images`) and re-exports both, so one import serves every caller.
Device side: Python 3.8, no torch; OpenCV is imported when a video source opens.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from edge_resnet.core import DataError, InputError, SourceError
from edge_resnet.images import IMAGE_EXTENSIONS, image_files, is_image_file, read_image
from edge_resnet.runtime.cvsource import (VIDEO_EXTENSIONS, CvSource, csi_pipeline,
                                          gstreamer_available, video_frame_count, video_frames)
from edge_resnet.runtime.events import redact
from edge_resnet.runtime.source_base import SourceOptions, SourceURI, VideoSource

__all__ = ["SourceOptions", "SourceURI", "VideoSource", "CvSource", "ImageSequenceSource",
           "VIDEO_EXTENSIONS", "create_source", "parse_uri", "gstreamer_available",
           "csi_pipeline", "video_frame_count", "video_frames"]


def _looks_like_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def parse_uri(uri: str) -> SourceURI:
    """Name the source kind of ``uri``; unknown schemes are an :class:`InputError`."""
    text = str(uri).strip()
    if not text:
        raise InputError("empty source URI; give e.g. csi://0, /dev/video0, clip.mp4 or a folder")
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        table = {"csi": "csi", "v4l2": "v4l2", "rtsp": "rtsp", "rtsps": "rtsp", "http": "http",
                 "https": "http", "file": "file", "gst": "gst"}
        if scheme not in table:
            raise InputError(f"unknown source scheme {scheme!r} in {redact(text)!r}; use one of "
                             "csi://, v4l2://, rtsp://, http://, file://, gst://")
        kind = table[scheme]
        location = text if kind in ("rtsp", "http") else rest
        if kind == "file":
            return _local_source(text, location)
        if kind == "csi" and not location.isdigit():
            raise InputError(f"csi:// needs a sensor index (csi://0), got {text!r}")
        return SourceURI(text, kind, location)
    if text.isdigit():
        return SourceURI(text, "v4l2", text)
    if text.startswith("/dev/video"):
        return SourceURI(text, "v4l2", text)
    return _local_source(text, text)


def _local_source(uri: str, location: str) -> SourceURI:
    path = Path(location).expanduser()
    if path.is_dir() or _looks_like_glob(location):
        return SourceURI(uri, "images", str(path))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return SourceURI(uri, "images", str(path))
    if not path.exists():
        raise SourceError(f"source {location!r} does not exist (expected a video file, an image "
                          "folder or glob, a camera such as /dev/video0 or csi://0, or a stream URL)")
    return SourceURI(uri, "file", str(path))


class ImageSequenceSource(VideoSource):
    """A folder (recursively, sorted) or glob of images, delivered as frames in name order.

    An unreadable image raises :class:`DataError` naming the file; the capture loop counts it
    as a corrupt frame and goes on.
    """

    def __init__(self, uri: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.files: List[Path] = []
        self.position = 0

    def open(self) -> None:
        loc = self.uri.location
        if Path(loc).is_dir():
            self.files = image_files(loc)
        else:
            self.files = [p for p in map(Path, sorted(glob.glob(loc, recursive=True)))
                          if is_image_file(p)]
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) in {loc!r}")
        self.frame_count = len(self.files)
        self.position = 0

    def read(self) -> Optional[np.ndarray]:
        if self.position >= len(self.files):
            return None
        path = self.files[self.position]
        self.position += 1
        self.last_path = str(path)
        try:
            rgb = read_image(path)
        except DataError as exc:
            raise DataError(f"corrupt frame {self.position - 1}: {exc}") from exc
        return np.ascontiguousarray(rgb[:, :, ::-1])

    def rewind(self) -> bool:
        self.position = 0
        return True

    def close(self) -> None:
        pass


_SOURCES: Dict[str, Callable[[SourceURI, SourceOptions], VideoSource]] = {
    "images": ImageSequenceSource,
    "csi": CvSource, "v4l2": CvSource, "rtsp": CvSource, "http": CvSource, "file": CvSource,
    "gst": CvSource,
}


def create_source(uri: str, options: Optional[SourceOptions] = None) -> VideoSource:
    """Pick the source implementation from the URI (does not open it)."""
    parsed = parse_uri(uri)
    return _SOURCES[parsed.kind](parsed, options or SourceOptions())
