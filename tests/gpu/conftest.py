"""The ``gpu`` marker: tests that need an NVIDIA GPU skip with the reason when there is none.

A test module marks itself ``pytestmark = pytest.mark.gpu``; here the marker turns into a skip
that names why (no cuda-python, no driver, no device), found by asking CUDA once per session.
Shared GPU test helpers (a random-weight checkpoint) live here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import pytest


def no_gpu_reason() -> Optional[str]:
    """None when a CUDA device answers, else the SDK's error message saying why not."""
    from edge_resnet.core import EdgeResnetError
    from edge_resnet.cuda import get_device

    try:
        get_device(0)
    except EdgeResnetError as exc:
        return f"no usable CUDA device: {exc}"
    return None


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    marked = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not marked:
        return
    reason = no_gpu_reason()
    if reason is not None:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An edge-resnet checkpoint of a seeded random ResNet50 (10 classes, 64x64 input): real
    weights for backend parity on machines where the trained digits model is not cached."""
    from edge_resnet.export.models import load_model, save_checkpoint

    loaded = load_model("random", num_classes=10, resolution=64)
    path = tmp_path_factory.mktemp("gpu-models") / "random-resnet50.pt"
    save_checkpoint(path, loaded.model, loaded.spec)
    return path
