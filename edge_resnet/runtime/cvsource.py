"""OpenCV capture: cameras (V4L2, CSI through GStreamer), network streams (RTSP/HTTP through
FFmpeg, with open/read timeouts and TCP transport), GStreamer pipelines and video files.

This is also the SDK's one way to read a video file (:data:`VIDEO_EXTENSIONS`,
:func:`video_frames`: RGB uint8 frames, used by calibration's video reader), through the same
:class:`CvSource` reads the runtime's file source makes, so calibration sees the frames inference
will see. :mod:`edge_resnet.runtime.sources` picks this source by URI and re-exports these names.
Device side: Python 3.8, no torch; OpenCV is imported when a video source opens.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

import numpy as np

from edge_resnet.core import DependencyError, InputError, SourceError
from edge_resnet.runtime.diagnose import diagnose_open_failure, probe_source
from edge_resnet.runtime.logs import quiet_video_libraries
from edge_resnet.runtime.source_base import SourceOptions, SourceURI, VideoSource

__all__ = ["CvSource", "VIDEO_EXTENSIONS", "csi_pipeline", "gstreamer_available",
           "video_frame_count", "video_frames"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                    ".mjpeg", ".mjpg", ".h264", ".h265", ".flv", ".wmv")

# Network streams: give up on a read/open after this long so an outage is noticed and retried.
NETWORK_TIMEOUT_MS = 5000


def gstreamer_available() -> bool:
    """True when the OpenCV in use was built with GStreamer (Jetson's system OpenCV is)."""
    cv2 = _import_cv2()
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor: int, options: SourceOptions) -> str:
    """The nvarguscamerasrc → BGR appsink pipeline jetson-utils uses for MIPI CSI cameras."""
    width, height = options.width or 1280, options.height or 720
    fps = int(options.fps or 30)
    return (f"nvarguscamerasrc sensor-id={sensor} ! "
            f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, "
            f"format=NV12 ! nvvidconv flip-method={options.flip} ! video/x-raw, format=BGRx ! "
            "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false")


def _import_cv2() -> Any:
    quiet_video_libraries()   # before OpenCV/FFmpeg read their log levels (-v set them first)
    try:
        import cv2
    except ImportError as exc:
        raise DependencyError(
            "video sources need OpenCV: `pip install edge-resnet[video]` (on a Jetson use the "
            "system OpenCV, which has GStreamer)") from exc
    return cv2


# RTSP: interleaved over the TCP control connection (no UDP loss; a camera that goes away
# closes the connection, so the outage is seen at once, not after the 5 s read timeout), and
# 0.1 s of stream analysed instead of FFmpeg's 5 s (about 1 s to open a 25 fps camera, i.e.
# to come back after an outage; the SDP already names the codec and size).
RTSP_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;100000"
_ENV_LOCK = threading.Lock()


@contextmanager
def _rtsp_capture_options(active: bool) -> Iterator[None]:
    """Set ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` for one RTSP open, unless the user set it."""
    key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    if not active or key in os.environ:
        yield
        return
    with _ENV_LOCK:
        os.environ[key] = RTSP_CAPTURE_OPTIONS
        try:
            yield
        finally:
            os.environ.pop(key, None)


class CvSource(VideoSource):
    """Anything OpenCV's VideoCapture opens: files and HTTP/RTSP (FFmpeg), V4L2, GStreamer."""

    def __init__(self, uri: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self._cap: Any = None
        self.position = 0
        # files: the decoder's index of the last frame handed out. After a seek over a damaged
        # frame FFmpeg can land on (and re-decode) frames it already gave; such a frame is
        # stale, never a new result, and means the rest of the file cannot be reached.
        self.last_decoded = -1
        self.damaged = False
        self.delivered = 0      # frames handed out in this pass (files: lost = count - this)
        self.skipped = 0        # seeks over frames that failed to decode in this pass

    def _target(self, cv2: Any) -> "tuple[Any, int]":
        kind, loc = self.uri.kind, self.uri.location
        if kind in ("csi", "gst"):
            if not gstreamer_available():
                raise DependencyError(
                    f"{self.uri.uri} needs OpenCV built with GStreamer, and this OpenCV "
                    f"({cv2.__version__}) has none (pip wheels never do). On a Jetson uninstall "
                    "opencv-python* from pip so the JetPack OpenCV (with GStreamer) is used.")
            pipeline = csi_pipeline(int(loc), self.options) if kind == "csi" else loc
            return pipeline, cv2.CAP_GSTREAMER
        if kind == "v4l2":
            index = int(loc) if loc.isdigit() else loc
            if isinstance(index, str) and index.startswith("/dev/video") and index[10:].isdigit():
                index = int(index[10:])
            return index, getattr(cv2, "CAP_V4L2", cv2.CAP_ANY)
        return loc, cv2.CAP_FFMPEG

    def open(self) -> None:
        cv2 = _import_cv2()
        target, api = self._target(cv2)
        params: List[int] = []
        if self.uri.kind in ("rtsp", "http"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
        with _rtsp_capture_options(self.uri.kind == "rtsp"):
            cap = cv2.VideoCapture(target, api, params) if params else \
                cv2.VideoCapture(target, api)
        if self.uri.kind == "v4l2" and cap.isOpened():
            self._apply_camera_options(cv2, cap)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open source {self.describe()}: "
                              f"{diagnose_open_failure(self.uri)}")
        self._cap = cap
        self._reset_pass()
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.frame_rate = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None

    def _reset_pass(self) -> None:
        self.position, self.last_decoded, self.damaged, self.delivered, self.skipped = \
            0, -1, False, 0, 0

    def _apply_camera_options(self, cv2: Any, cap: Any) -> None:
        opts = self.options
        if opts.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, opts.width)
        if opts.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, opts.height)
        if opts.fps:
            cap.set(cv2.CAP_PROP_FPS, opts.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def read(self) -> Optional[np.ndarray]:
        if self._cap is None:
            if self.live:  # lost and not reopened yet: the capture loop reconnects
                return None
            raise SourceError(f"source {self.describe()} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if not self.live:
            decoded = int(self._cap.get(_import_cv2().CAP_PROP_POS_FRAMES)) - 1
            if decoded <= self.last_decoded:   # a repeat of a frame already handed out
                self.damaged = True
                return None
            self.last_decoded = decoded
            self.position = decoded
        self.position += 1
        self.delivered += 1
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        return frame

    def probe(self) -> Optional[bool]:
        return probe_source(self.uri)

    def skip(self) -> bool:
        """Step over an undecodable frame of a file (seek to the next one); False if it cannot."""
        cv2 = _import_cv2()
        if self._cap is None or self.live or self.damaged:
            return False
        self.position += 1
        self.skipped += 1
        return bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, self.position))

    def rewind(self) -> bool:
        cv2 = _import_cv2()
        self._reset_pass()
        if self._cap is not None and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self.position = 0
            return True
        return super().rewind()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _file_source(path: "str | Path") -> CvSource:
    location = str(path)
    return CvSource(SourceURI(location, "file", location), SourceOptions())


def video_frame_count(path: "str | Path") -> int:
    """The frame count the video file's container states (0 when it states none); opening it
    first, so an undecodable file is a :class:`SourceError` here, not midway through a pass."""
    source = _file_source(path)
    source.open()
    try:
        return source.frame_count or 0
    finally:
        source.close()


def video_frames(path: "str | Path", stride: int = 1, limit: Optional[int] = None
                 ) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file: every ``stride``-th frame, at most ``limit``, up to
    the end or the first frame that cannot be decoded. The same reads as the runtime's file
    source (:class:`CvSource`), so calibration sees the frames inference will see."""
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    source = _file_source(path)
    source.open()
    cv2 = _import_cv2()
    index = taken = 0
    try:
        while limit is None or taken < limit:
            frame = source.read()
            if frame is None:
                break
            if index % stride == 0:
                taken += 1
                # cvtColor: 0.07 ms per 640x480 frame; a numpy channel flip + copy: 2.7 ms
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        source.close()
