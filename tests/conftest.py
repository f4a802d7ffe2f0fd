"""Makes the shared session fixtures of tests/fixtures.py visible to every test directory."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import (  # noqa: E402,F401  (re-exported pytest fixtures)
    digits_checkpoint,
    digits_dirs,
    digits_features_onnx,
    digits_fused_onnx,
    digits_model,
    digits_onnx,
    digits_test_images,
    empty_hub,
)
