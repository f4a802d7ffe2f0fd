"""Fixtures shared by the export-stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture()
def empty_hub(tmp_path: Path) -> Iterator[Path]:
    """Point torch's hub cache at an empty folder (restored afterwards)."""
    import torch

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)
