"""Fixtures of the bundle tests: fleet identities and a tiny ONNX classifier built with onnx.helper.

The tiny model (8x8 input, GlobalAveragePool -> Gemm, 3 classes) carries the same edge-resnet
metadata as an exported ResNet50, so every bundle code path (create, verify, install, health
check) runs on it in milliseconds; the power-loss test installs it hundreds of times.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_resnet.bundle.create import BundleSpec, create_bundle
from edge_resnet.bundle.signing import generate_identity
from edge_resnet.core import ModelSpec

TINY_SPEC = ModelSpec(labels=("cat", "dog", "owl"), resolution=8, resize=None)


def write_tiny_model(path: Path, seed: int = 0, scale: float = 1.0,
                     precision: str = "fp32") -> Path:
    """A 3-class classifier on 8x8 RGB whose weights depend on ``seed`` (``scale`` skews it)."""
    rng = np.random.default_rng(seed)
    weight = (rng.normal(size=(3, 3)) * scale).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = dict(TINY_SPEC.to_metadata(), **{"edge_resnet.precision": json.dumps(precision)})
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


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
