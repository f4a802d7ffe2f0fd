"""Fixtures of the bundle tests: fleet identities and a tiny ONNX classifier built with onnx.helper.

The tiny model (8x8 input, GlobalAveragePool -> Gemm, 3 classes) carries the same edge-resnet
metadata as an exported ResNet50, so every bundle code path (create, verify, install, health
check) runs on it in milliseconds; the power-loss test installs it hundreds of times.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Tuple

import pytest

from edge_resnet.bundle.create import BundleSpec, create_bundle
from edge_resnet.bundle.signing import generate_identity
from tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """(fleet.key, fleet.crt) of the test fleet."""
    return generate_identity(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="session")
def other_fleet(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """An unrelated identity (the wrong key)."""
    return generate_identity(tmp_path_factory.mktemp("other-fleet"))


MakeBundle = Callable[..., Path]


@pytest.fixture(scope="session")
def make_bundle(tmp_path_factory: pytest.TempPathFactory, fleet: Tuple[Path, Path]) -> MakeBundle:
    """make_bundle(version, seed=0, **BundleSpec fields) -> a signed tiny-model bundle path."""
    folder = tmp_path_factory.mktemp("bundles")

    def make(version: str, seed: int = 0, key: Path = fleet[0], **fields: object) -> Path:
        model = write_tiny_model(folder / f"tiny-{version}-{seed}.onnx", seed)
        out = folder / f"tiny-{version}-{seed}-{len(list(folder.iterdir()))}.bundle"
        create_bundle(BundleSpec(name="tiny", version=version, models=[model], key=key,
                                 out=out, **fields))  # type: ignore[arg-type]
        return out
    return make


def python_runs(code: str) -> bool:
    """Whether this interpreter runs ``code`` (for version-dependent checks)."""
    return sys.version_info >= (3, 8) and bool(code)
