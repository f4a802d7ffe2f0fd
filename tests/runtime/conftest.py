"""Runtime test fixtures: a digit video (helpers in media.py, beside this file)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from media import digit_frames, write_video  # noqa: E402


@pytest.fixture(scope="session")
def digits_video(digits_test_images: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> Tuple[Path, List[int]]:
    """A 40-frame 640x480 MJPG video of digit test images and the frames' true labels."""
    frames, labels = digit_frames(digits_test_images, 40)
    path = tmp_path_factory.mktemp("videos") / "digits.avi"
    return write_video(path, frames), labels
