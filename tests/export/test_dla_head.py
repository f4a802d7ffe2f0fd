"""export --dla-head: the head rewrite (AveragePool + FC as 1x1 Conv) and its parity proof."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
from edge_resnet.core import ModelError
from edge_resnet.export.dla_head import prove_dla_head, rewrite_dla_head
from edge_resnet.preprocessing import preprocess_batch


def _head_graph(channels: int = 16, side: int = 7, classes: int = 5, seed: int = 0) -> Any:
    """x [N, C, 7, 7] -> GlobalAveragePool -> Flatten -> Gemm(transB=1): a torchvision head."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((classes, channels)).astype(np.float32), "fc.weight")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "fc.bias")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: Any, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"x": x})[0]


def test_7x7_head_becomes_avgpool_and_conv_with_equal_logits() -> None:
    model = _head_graph()
    rewritten = rewrite_dla_head(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops == ["AveragePool", "Conv", "Flatten"]
    pool = rewritten.graph.node[0]
    assert helper.get_attribute_value(pool.attribute[0]) == [7, 7]
    assert {i.name for i in rewritten.graph.initializer} == {"fc.weight.as_1x1_conv", "fc.bias"}
    x = np.random.default_rng(1).standard_normal((4, 16, 7, 7)).astype(np.float32) * 3
    np.testing.assert_allclose(_run(rewritten, x), _run(model, x), rtol=1e-5, atol=1e-5)
    assert [n.op_type for n in model.graph.node][0] == "GlobalAveragePool"  # input untouched


def test_not_a_resnet_head_is_refused() -> None:
    model = _head_graph()
    gemm = model.graph.node[2]
    gemm.attribute[0].i = 0  # transB=0: weights laid out differently than torchvision's
    with pytest.raises(ModelError, match="not torchvision's"):
        rewrite_dla_head(model)
    del model.graph.node[0:3]
    with pytest.raises(ModelError, match="expected one GlobalAveragePool"):
        rewrite_dla_head(model)


def _digit_images(digits_test_images: List[Tuple[np.ndarray, int]], n: int = 24) -> List[np.ndarray]:
    return [im for im, _ in digits_test_images[:n]]


def test_digits_features_model_keeps_both_outputs(digits_features_onnx: Path, tmp_path: Path,
                                                  digits_test_images: Any) -> None:
    out = tmp_path / "dla.onnx"
    onnx.save(rewrite_dla_head(onnx.load(str(digits_features_onnx))), str(out))
    images = _digit_images(digits_test_images)
    report = prove_dla_head(digits_features_onnx, out, images, atol=1e-4, rtol=1e-5,
                            min_top1_agreement=1.0)
    assert report.ok and report.top1_agreement == 1.0
    with OnnxRuntimeBackend(digits_features_onnx) as a, OnnxRuntimeBackend(out) as b:
        batch = preprocess_batch(images, a.spec)
        fa, fb = a.infer(batch).features, b.infer(batch).features
    assert fa is not None and fb is not None
    np.testing.assert_allclose(fb, fa, rtol=1e-5, atol=1e-5)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "GlobalAveragePool" not in ops and "Gemm" not in ops


def test_export_cli_dla_head(digits_checkpoint: Path, tmp_path: Path, capsys: Any) -> None:
    from edge_resnet.cli import main

    out = tmp_path / "digits.dla.onnx"
    assert main(["export", str(digits_checkpoint), "--out", str(out), "--dla-head",
                 "--check-count", "16"]) == 0
    printed = capsys.readouterr().out
    assert "DLA head: parity ok" in printed
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node][-3:] == ["AveragePool", "Conv", "Flatten"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edge_resnet.graph_rewrite"] == '"dla_head"' and "edge_resnet.labels" in meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.dla.onnx"]


def test_export_cli_dla_head_failure_leaves_nothing(digits_checkpoint: Path, tmp_path: Path,
                                                    capsys: Any, monkeypatch: Any) -> None:
    """When the rewrite is refused after the plain export was written, --out is removed."""
    from edge_resnet.cli import main
    from edge_resnet.export import dla_head

    def refuse(model: Any) -> Any:
        raise ModelError("the GlobalAveragePool does not feed a single Flatten")
    monkeypatch.setattr(dla_head, "rewrite_dla_head", refuse)
    out = tmp_path / "digits.dla.onnx"
    code = main(["export", str(digits_checkpoint), "--out", str(out), "--dla-head",
                 "--check-count", "8"])
    assert code == 2 and "single Flatten" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
