"""Evaluation-stage fixtures: a digits candidate whose every prediction is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

# Added to class 0's logit: far beyond any logit the digits model produces, so the candidate
# predicts "0" for every image, whatever the trained model looks like.
CLASS0_SHIFT = 1.0e4


@pytest.fixture(scope="session")
def class0_digits_onnx(digits_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits FP32 ONNX with ``CLASS0_SHIFT`` added to the class-0 logit (same metadata).

    Its top-1 accuracy is exactly the share of class-0 images, it agrees with the reference
    exactly where the reference says "0", and its |Δlogit| is ``CLASS0_SHIFT`` on class 0 and
    exactly 0 on the other nine classes: numbers every fixture model gives, trained or not.
    """
    model = onnx.load(str(digits_onnx))
    graph = model.graph
    output = graph.output[0].name
    raw = output + "_unshifted"
    for node in graph.node:
        node.output[:] = [raw if name == output else name for name in node.output]
    classes = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    shift = np.zeros((classes,), np.float32)
    shift[0] = CLASS0_SHIFT
    graph.initializer.append(numpy_helper.from_array(shift, "class0_shift"))
    graph.node.append(onnx.helper.make_node("Add", [raw, "class0_shift"], [output]))
    path = tmp_path_factory.mktemp("class0") / "digits_class0.onnx"
    onnx.save(model, str(path))
    return path
