"""describe_onnx / read_cache_header on the digits fixture models and hand-built small graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_resnet.core import InputError, ModelError
from edge_resnet.devices.plan import BuildRequest, plan_build
from edge_resnet.devices.profiles import get_profile
from edge_resnet.engine.artifacts import collect_artifacts, describe_onnx, read_cache_header
from edge_resnet.fingerprints import sha256_file


def _tiny(path: Path, *, elem: int = TensorProto.FLOAT, qdq: bool = False, batch: object = "N",
          opset: int = 17) -> Path:
    """x -> (Q/DQ) -> Relu, the smallest graph with the property under test."""
    nodes, inits = [], []
    src = "x"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        src = "dq"
    nodes.append(helper.make_node("Relu", [src], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", elem, [batch, 3, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_digits_fp32_and_fused(digits_onnx: Path, digits_fused_onnx: Path) -> None:
    fp32 = describe_onnx(digits_onnx)
    assert (fp32.kind, fp32.input_dtype, fp32.batch) == ("fp32", "float32", None)
    assert fp32.opset >= 17 and fp32.sha256 == sha256_file(digits_onnx).sha256
    fused = describe_onnx(digits_fused_onnx)
    assert (fused.kind, fused.input_dtype) == ("fp32", "uint8")


def test_kinds_from_small_graphs(tmp_path: Path) -> None:
    assert describe_onnx(_tiny(tmp_path / "q.onnx", qdq=True)).kind == "qdq"
    half = describe_onnx(_tiny(tmp_path / "h.onnx", elem=TensorProto.FLOAT16))
    assert (half.kind, half.input_dtype) == ("fp16", "float16")
    fixed = describe_onnx(_tiny(tmp_path / "b.onnx", batch=4, opset=13))
    assert (fixed.batch, fixed.opset) == (4, 13)


def test_unreadable_models(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        describe_onnx(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not onnx at all" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        describe_onnx(bad)


def test_cache_header_and_plan_from_real_cache(tmp_path: Path, digits_onnx: Path) -> None:
    cache = tmp_path / "c.cache"  # the format of the facts doc (scale hex per tensor)
    cache.write_text("TRT-8602-MinMaxCalibration\ninput: 3c010a14\ny: 3c010a14\n")
    assert read_cache_header(cache) == (8602, "MinMaxCalibration")
    artifacts = collect_artifacts([digits_onnx], cache)
    plan = plan_build(get_profile("orin-nx-16gb"), "8.6.2", artifacts,
                      BuildRequest(precision="int8", out_dir=str(tmp_path)))
    assert (plan.calibrator, plan.calibration_cache) == ("MinMaxCalibration", str(cache))
    (tmp_path / "junk.cache").write_text("hello\n")
    with pytest.raises(InputError, match="not a TensorRT calibration cache"):
        read_cache_header(tmp_path / "junk.cache")
