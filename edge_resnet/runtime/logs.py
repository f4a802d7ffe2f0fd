"""Logs people can read: a timestamp and level on every line, video-library noise off by default.

FFmpeg (through OpenCV) prints its own ``[h264 @ 0x…]`` lines straight to stderr: thousands for
one damaged file, none of them ours. Unless ``-v``, ``OPENCV_FFMPEG_LOGLEVEL`` is set to quiet
and OpenCV's own log to errors before OpenCV is first imported; what matters reaches the
operator through our messages instead (lost frames counted, causes named). A value set in the
environment wins over that default; ``-v`` removes the default again (FFmpeg's lines back on
stderr, OpenCV's log at its own default). Device side: Python 3.8, stdlib only.
"""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging", "quiet_video_libraries", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# FFmpeg av_log level -8 is quiet. Not a verbose *level*: once OPENCV_FFMPEG_LOGLEVEL is set,
# OpenCV prints FFmpeg's messages to stdout (where JSONL may go); unset, FFmpeg prints them to
# stderr itself, so -v simply removes our quiet default.
_QUIET = {"OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR"}
_VERBOSE = False   # -v was given: leave the video libraries' logging alone


def configure_logging(verbose: bool = False) -> None:
    """Timestamped formatter on the root handlers; quiet (or, with ``verbose``, warning-level)
    FFmpeg/OpenCV logging for the rest of the process."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    global _VERBOSE
    if verbose:   # FFmpeg's own messages on stderr again (undo only our quiet default)
        _VERBOSE = True
        for key, value in _QUIET.items():
            if os.environ.get(key) == value:
                del os.environ[key]
    else:
        quiet_video_libraries()


def quiet_video_libraries() -> None:
    """The default for every user of the runtime's sources (library, ``bundle run``): FFmpeg
    quiet, OpenCV errors only, unless already chosen (environment, ``-v``)."""
    if _VERBOSE:
        return
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)
