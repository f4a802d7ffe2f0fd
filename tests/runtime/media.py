"""Runtime test media: 640x480 digit frames and OpenCV-written/read videos."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np

FRAME_W, FRAME_H = 640, 480


def digit_frames(images: Sequence[Tuple[np.ndarray, int]], count: int
                 ) -> Tuple[List[np.ndarray], List[int]]:
    """``count`` 640x480 BGR frames, each a digit test image scaled up, and their labels."""
    import cv2

    frames, labels = [], []
    for rgb, label in list(images)[:count]:
        big = cv2.resize(rgb, (FRAME_W, FRAME_H), interpolation=cv2.INTER_NEAREST)
        frames.append(np.ascontiguousarray(big[:, :, ::-1]))
        labels.append(label)
    return frames, labels


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 25.0,
                codec: str = "MJPG") -> Path:
    """Write frames with OpenCV (MJPG .avi by default: near-lossless for these frames)."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> List[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames




def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               poll: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)
