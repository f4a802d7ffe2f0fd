"""The bundle tests' model: a tiny 3-class ONNX classifier, importable by name from test modules
and the conftest alike (a test module importing ``conftest`` breaks when several test folders,
each with its own conftest, are collected in one run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edge_resnet.core import ModelSpec
from fixtures import save_tiny_onnx

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
    return save_tiny_onnx(path, graph, TINY_SPEC,
                          {"edge_resnet.precision": json.dumps(precision)})
