"""Logs people can read: a timestamp and level on every line, video-library noise off by default.

FFmpeg (through OpenCV) prints its own ``[h264 @ 0x…]`` lines straight to stderr: thousands for
one damaged file, none of them ours. Unless ``-v``, ``OPENCV_FFMPEG_LOGLEVEL`` is set to quiet
and OpenCV's own log to errors before OpenCV is first imported; what matters reaches the
operator through our messages instead (lost frames counted, causes named). A value the user
set in the environment wins. Device side: Python 3.8, stdlib only.
"""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging", "quiet_video_libraries", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# FFmpeg av_log levels: -8 quiet, 24 warning, 32 info; OpenCV: SILENT..VERBOSE
_QUIET = {"OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR"}
_VERBOSE = {"OPENCV_FFMPEG_LOGLEVEL": "24", "OPENCV_LOG_LEVEL": "INFO"}


def configure_logging(verbose: bool = False) -> None:
    """Timestamped formatter on the root handlers; quiet (or, with ``verbose``, warning-level)
    FFmpeg/OpenCV logging for the rest of the process."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    for key, value in (_VERBOSE if verbose else _QUIET).items():
        os.environ.setdefault(key, value)


def quiet_video_libraries() -> None:
    """The default for every user of the runtime's sources (library, ``bundle run``): FFmpeg
    quiet, OpenCV errors only, unless already chosen (environment, ``-v``)."""
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)
