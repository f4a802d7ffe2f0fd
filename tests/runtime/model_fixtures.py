"""Digits ONNX variants for runtime and OpenVINO tests, cached on disk beside the checkpoint.

Keyed by the checkpoint file name (itself keyed by recipe, SDK and torch versions), so the
runtime and backend test folders share one export even though each registers the fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fixtures import _locked, cache_dir


def _export(checkpoint: Path, name: str, **kwargs: Any) -> Path:
    from edge_resnet.export.models import load_model
    from edge_resnet.export.onnx_export import export_onnx

    out = cache_dir() / f"{checkpoint.stem}-{name}.onnx"
    with _locked(out.name):
        if not out.is_file():
            loaded = load_model(str(checkpoint))
            export_onnx(loaded.model, loaded.spec, out, weights_sha256=loaded.weights_sha256,
                        source=str(checkpoint), **kwargs)
    return out


@pytest.fixture(scope="session")
def digits_features_onnx(digits_checkpoint: Path) -> Path:
    """Digits ONNX with the pooled 2048-d ``features`` output (for galleries)."""
    return _export(digits_checkpoint, "features", with_features=True)


@pytest.fixture(scope="session")
def digits_fused_onnx(digits_checkpoint: Path) -> Path:
    """Digits ONNX with preprocessing fused in-graph (uint8 BGR NHWC input)."""
    return _export(digits_checkpoint, "fused-bgr", fuse_preprocessing=True,
                   input_color_order="BGR")
