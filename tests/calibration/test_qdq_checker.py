"""The QDQ model follows TensorRT's rules; the checker rejects broken variants by node name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edge_resnet.calibration.checker import check_qdq
from edge_resnet.calibration.graph import GraphIndex, conv_depths, resnet_layout, \
    residual_inputs
from edge_resnet.calibration.qdq import qdq_scales, quantized_tensors


@pytest.fixture(scope="module")
def qdq(calibrated: Any) -> onnx.ModelProto:
    return onnx.load(str(calibrated.methods["entropy"].qdq_path))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def test_written_models_pass_and_follow_placement(calibrated: Any, qdq: onnx.ModelProto) -> None:
    for art in calibrated.methods.values():
        assert check_qdq(onnx.load(str(art.qdq_path))) == [], art.method
    index = GraphIndex(qdq)
    layout = resnet_layout(qdq)
    depths = conv_depths(index)
    ops = [n.op_type for n in qdq.graph.node]
    # ResNet50: 53 Conv inputs + 53 Conv weights + 16 residual shortcuts + MaxPool + GAP
    assert (len(layout.convs), len(layout.residual_adds), len(layout.pools)) == (53, 16, 2)
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") == 53 + 53 + 16 + 2
    for node in qdq.graph.node:
        if node.op_type == "Conv":  # nothing between a Conv and its ReLU or residual Add, except
            consumers = {c.op_type for c in index.consumers[node.output[0]]}  # a shortcut pair
            assert consumers in ({"Relu"}, {"Add"}, {"QuantizeLinear"}), (node.name, consumers)
            if consumers == {"QuantizeLinear"}:
                assert "downsample" in node.name  # the shortcut branch of a downsampling block
    for name in layout.residual_adds:
        add = next(n for n in qdq.graph.node if n.name == name)
        main, shortcut = residual_inputs(index, add, depths)
        assert index.producer[add.input[shortcut]].op_type == "DequantizeLinear", name
        assert index.producer[add.input[main]].op_type == "Conv", name  # fuses Conv+Add(+ReLU)
        assert depths[add.input[main]] > depths[add.input[shortcut]]
    for name in layout.pools:
        pool = next(n for n in qdq.graph.node if n.name == name)
        assert index.producer[pool.input[0]].op_type == "DequantizeLinear", name
    for name in layout.fc:  # classifier left float by design
        fc = next(n for n in qdq.graph.node if n.name == name)
        assert index.producer[fc.input[0]].op_type != "DequantizeLinear"
    assert max(o.version for o in qdq.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_old_both_inputs_placement_is_rejected_with_the_add_named(
        calibrated: Any, qdq: onnx.ModelProto) -> None:
    """The placement an earlier brief asked for (a pair on the Conv->Add edge too) breaks the
    Conv+Add fusion: the checker names every such Add and the document."""
    from edge_resnet.calibration.qdq import _Inserter

    old = _copy(qdq)
    index = GraphIndex(old)
    depths = conv_depths(index)
    inserter = _Inserter(old)
    adds = [n for n in old.graph.node if n.name in resnet_layout(old).residual_adds]
    for add in adds:
        inserter.pair(add, residual_inputs(index, add, depths)[0], np.array(0.05, np.float32))
    inserter.finish()
    messages = [str(v) for v in check_qdq(old)]
    assert len(messages) == 16, messages
    for add, message in zip(adds, messages):
        assert message.startswith(add.name) and "Conv->Add input" in message
        assert "Q/DQ Layer-Placement Recommendations" in message


def test_activation_scales_are_amax_over_127(calibrated: Any, qdq: onnx.ModelProto,
                                             digits_onnx: Path) -> None:
    import json

    amax = json.loads(calibrated.methods["entropy"].ranges_path.read_text())["amax"]
    scales = qdq_scales(qdq)
    assert set(scales) == set(quantized_tensors(onnx.load(str(digits_onnx))))
    for tensor, scale in scales.items():
        assert scale == pytest.approx(amax[tensor] / 127.0, rel=1e-6)


def _first(model: onnx.ModelProto, pred: Callable[[Any], bool]) -> Any:
    return next(n for n in model.graph.node if pred(n))


def test_nonzero_zero_point_is_rejected_by_name(qdq: onnx.ModelProto) -> None:
    broken = _copy(qdq)
    q = _first(broken, lambda n: n.op_type == "QuantizeLinear")
    init = next(i for i in broken.graph.initializer if i.name == q.input[2])
    init.CopyFrom(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(init)), init.name))
    messages = [str(v) for v in check_qdq(broken)]
    assert any(m.startswith(q.name) and "non-zero zero point" in m for m in messages), messages


def test_missing_qdq_on_shortcut_and_pool_inputs_is_rejected(qdq: onnx.ModelProto) -> None:
    broken = _copy(qdq)
    index = GraphIndex(broken)
    layout = resnet_layout(broken)
    add = _first(broken, lambda n: n.name == layout.residual_adds[0])
    shortcut = residual_inputs(index, add, conv_depths(index))[1]
    dq = index.producer[add.input[shortcut]]
    add.input[shortcut] = index.producer[dq.input[0]].input[0]  # the Add reads the float tensor
    pool = _first(broken, lambda n: n.name == layout.pools[-1])
    dq = index.producer[pool.input[0]]
    pool.input[0] = index.producer[dq.input[0]].input[0]
    messages = [str(v) for v in check_qdq(broken)]
    assert any(m.startswith(add.name) and f"shortcut input {shortcut}" in m
               for m in messages), messages
    assert any(m.startswith(pool.name) and "pooling input is not quantized" in m
               for m in messages), messages
    assert len(messages) == 2, messages


def test_weight_axis_1_is_rejected(qdq: onnx.ModelProto) -> None:
    broken = _copy(qdq)
    index = GraphIndex(broken)
    conv = _first(broken, lambda n: n.op_type == "Conv")
    dq = index.producer[conv.input[1]]
    for attr in dq.attribute:
        if attr.name == "axis":
            attr.i = 1
    messages = [str(v) for v in check_qdq(broken)]
    assert any(m.startswith(conv.name) and "axis 1" in m for m in messages), messages


def test_unquantized_conv_and_int32_bias_and_old_opset(qdq: onnx.ModelProto,
                                                       digits_onnx: Path) -> None:
    float_model = onnx.load(str(digits_onnx))
    messages = [str(v) for v in check_qdq(float_model)]
    assert any("no QuantizeLinear" in m for m in messages)
    conv = resnet_layout(float_model).convs[0]
    assert any(m.startswith(conv) and "Conv input is not quantized" in m for m in messages)
    broken = _copy(qdq)
    broken.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.int32), "bias_q"))
    broken.graph.initializer.append(numpy_helper.from_array(np.float32(0.1), "bias_s"))
    broken.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.int32), "bias_z"))
    broken.graph.node.append(helper.make_node("DequantizeLinear", ["bias_q", "bias_s", "bias_z"],
                                              ["bias_f"], name="bias_dq"))
    broken.graph.output.append(onnx.ValueInfoProto(name="bias_f"))
    messages = [str(v) for v in check_qdq(broken)]
    assert any(m.startswith("bias_dq") and "int32" in m for m in messages), messages
    broken.opset_import[0].version = 12
    assert any("opset 12 < 13" in str(v) for v in check_qdq(broken))


def test_check_qdq_cli(calibrated: Any, qdq: onnx.ModelProto, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "edge_resnet.cli", "check-qdq",
                         str(calibrated.methods["entropy"].qdq_path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    broken = _copy(qdq)
    q = _first(broken, lambda n: n.op_type == "QuantizeLinear")
    init = next(i for i in broken.graph.initializer if i.name == q.input[2])
    init.CopyFrom(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(init)), init.name))
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    bad = subprocess.run([sys.executable, "-m", "edge_resnet.cli", "check-qdq", str(path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and q.name in bad.stderr
