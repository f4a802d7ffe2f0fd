"""ONNX export of the trained digits ResNet50: graph properties, interface, metadata, options.

Exports run at 32x32 (the digits model's resolution), so each costs a few seconds; the graphs
are shared per module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edge_resnet import __version__
from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
from edge_resnet.core import InputError, ModelError, ModelSpec
from edge_resnet.export.onnx_export import (ExportResult, export_onnx, fold_batchnorm,
                                            tensor_names)
from edge_resnet.export.parity import check_fused_vs_unfused
from edge_resnet.preprocessing import preprocess_batch


@pytest.fixture(scope="module")
def images(digits_test_images: List[Tuple[np.ndarray, int]]) -> List[np.ndarray]:
    """33 test digits spread over all classes."""
    return [img for img, _ in digits_test_images[::11]]


@pytest.fixture(scope="module")
def with_features(digits_model: Any, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    out = tmp_path_factory.mktemp("features") / "digits_features.onnx"
    return export_onnx(digits_model.model, digits_model.spec, out, with_features=True,
                       weights_sha256=digits_model.weights_sha256, source="digits-checkpoint")


@pytest.fixture(scope="module", params=["BGR", "RGB"])
def fused(request: pytest.FixtureRequest, digits_model: Any,
          tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    out = tmp_path_factory.mktemp("fused") / f"digits_fused_{request.param}.onnx"
    return export_onnx(digits_model.model, digits_model.spec, out, fuse_preprocessing=True,
                       input_color_order=request.param)


def _dims(value_info: onnx.ValueInfoProto) -> List[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_graph_is_clean_named_and_checked(with_features: ExportResult) -> None:
    path = with_features.path
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Identity" not in ops
    assert with_features.op_counts["Conv"] == 53  # every ResNet50 conv, BN folded into them
    assert [i.name for i in model.graph.input] == ["input"]
    assert _dims(model.graph.input[0]) == ["batch", 3, 32, 32]
    assert [(o.name, _dims(o)) for o in model.graph.output] == [
        ("logits", ["batch", 10]), ("features", ["batch", 2048])]
    names = tensor_names(model)
    assert "/conv1/Conv_output_0" in names
    assert "/layer1/layer1.0/conv1/Conv_output_0" in names
    assert "/layer4/layer4.2/relu_2/Relu_output_0" in names
    assert {"conv1.weight", "conv1.bias", "fc.weight"} <= {t.name for t in model.graph.initializer}
    assert len(model.graph.value_info) > 100  # shape inference results are stored
    # One self-contained file: no external-data side file, no temporary left behind.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert with_features.file_size == path.stat().st_size
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_metadata_round_trips_into_the_spec(with_features: ExportResult, digits_model: Any) -> None:
    with OnnxRuntimeBackend(with_features.path) as backend:
        assert backend.spec == with_features.spec
        assert backend.info.precision == "fp32"
    spec = with_features.spec
    assert spec.labels == digits_model.spec.labels and spec.resolution == 32
    assert spec.features_name == "features" and not spec.fused_preprocessing
    assert spec.weights_sha256 == digits_model.weights_sha256 != ""
    props = {p.key: p.value for p in onnx.load(str(with_features.path)).metadata_props}
    assert json.loads(props["edge_resnet.precision"]) == "fp32"
    assert json.loads(props["edge_resnet.sdk_version"]) == __version__
    assert json.loads(props["edge_resnet.source"]) == "digits-checkpoint"
    assert ModelSpec.from_metadata(props) == spec


def test_dynamic_batch_gives_the_same_rows(with_features: ExportResult,
                                           images: List[np.ndarray]) -> None:
    with OnnxRuntimeBackend(with_features.path) as backend:
        batch = preprocess_batch(images[:3], backend.spec)
        three = backend.infer(batch)
        ones = [backend.infer(batch[i:i + 1]) for i in range(3)]
    assert three.logits.shape == (3, 10) and three.features is not None
    assert three.features.shape == (3, 2048)
    for i, one in enumerate(ones):
        assert one.logits.shape == (1, 10)
        np.testing.assert_allclose(one.logits[0], three.logits[i], rtol=0, atol=1e-4)


def test_features_feed_the_classifier(with_features: ExportResult, digits_model: Any,
                                      images: List[np.ndarray]) -> None:
    with OnnxRuntimeBackend(with_features.path) as backend:
        out = backend.infer(preprocess_batch(images, backend.spec))
    assert out.features is not None
    assert float(out.features.min()) >= 0.0  # average of ReLU outputs
    fc = digits_model.model.fc
    recomputed = out.features @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
    np.testing.assert_allclose(recomputed, out.logits, rtol=0, atol=1e-4)


def test_fused_graph_takes_uint8_frames_and_matches_unfused(
        fused: ExportResult, digits_onnx: Path, images: List[np.ndarray]) -> None:
    order = fused.spec.color_order
    assert fused.spec.fused_preprocessing and order in ("BGR", "RGB")
    model = onnx.load(str(fused.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert _dims(model.graph.input[0]) == ["batch", 32, 32, 3]
    # cast, normalise, transpose in-graph; the BGR swap lives in conv1's weights (no Gather)
    assert [n.op_type for n in model.graph.node[:5]] == ["Cast", "Sub", "Mul", "Transpose", "Conv"]
    assert "Gather" not in fused.op_counts and "BatchNormalization" not in fused.op_counts
    report = check_fused_vs_unfused(fused.path, digits_onnx, images)
    assert report.ok and report.n_images == len(images)
    assert report.max_abs_diff < 1e-3 and report.top1_agreement == 1.0


def test_static_batch_and_newer_opset(digits_model: Any, tmp_path: Path,
                                      images: List[np.ndarray]) -> None:
    result = export_onnx(digits_model.model, digits_model.spec, tmp_path / "static.onnx",
                         opset=18, dynamic_batch=False)
    model = onnx.load(str(result.path))
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    assert result.input_shape == [1, 3, 32, 32] and result.output_shapes == {"logits": [1, 10]}
    with OnnxRuntimeBackend(result.path) as backend:
        assert backend.infer(preprocess_batch(images[:1], backend.spec)).logits.shape == (1, 10)


def test_export_does_not_change_the_model(digits_model: Any) -> None:
    folded = fold_batchnorm(digits_model.model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in digits_model.model.modules()) == 53
    batch = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("f4"))
    with torch.no_grad():
        torch.testing.assert_close(folded(batch), digits_model.model(batch), atol=1e-4, rtol=0)


def test_bad_arguments_are_refused_before_writing(digits_model: Any, tmp_path: Path) -> None:
    model, spec = digits_model.model, digits_model.spec
    out = tmp_path / "m.onnx"
    with pytest.raises(InputError, match="opset 16 is not supported"):
        export_onnx(model, spec, out, opset=16)
    with pytest.raises(InputError, match="opset 21 is not supported"):
        export_onnx(model, spec, out, opset=21)
    with pytest.raises(InputError, match="BGR or RGB"):
        export_onnx(model, spec, out, fuse_preprocessing=True, input_color_order="YUV")
    with pytest.raises(InputError, match="fuse_preprocessing=True instead"):
        export_onnx(model, spec.with_changes(fused_preprocessing=True), out)
    with pytest.raises(InputError, match="should end in .onnx"):
        export_onnx(model, spec, tmp_path / "m.pt")
    with pytest.raises(ModelError, match="fc has 10 outputs but the spec has 3 labels"):
        export_onnx(model, spec.with_changes(labels=("a", "b", "c")), out)
    with pytest.raises(ModelError, match="expected a torchvision ResNet"):
        export_onnx(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()), spec, out)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_an_input_error(digits_model: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder is expected")
    with pytest.raises(InputError, match="cannot write"):
        export_onnx(digits_model.model, digits_model.spec, blocker / "m.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        export_onnx(digits_model.model, digits_model.spec, tmp_path / "dir.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "not-a-folder"]


class _Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("layer exploded")


def test_failed_export_leaves_no_file(digits_model: Any, tmp_path: Path) -> None:
    import copy

    broken = copy.deepcopy(digits_model.model)
    broken.layer4 = _Broken()
    out = tmp_path / "broken.onnx"
    out.write_bytes(b"previous good model")
    with pytest.raises(ModelError, match="torch.onnx.export failed: RuntimeError: layer exploded"):
        export_onnx(broken, digits_model.spec, out)
    assert out.read_bytes() == b"previous good model"  # untouched, no temporaries beside it
    assert [p.name for p in tmp_path.iterdir()] == ["broken.onnx"]
