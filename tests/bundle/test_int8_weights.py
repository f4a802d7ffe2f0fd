"""INT8 QDQ payloads with int8 weight initializers: same outputs, ~4x smaller, checker-clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.calibration.checker import check_qdq
from edge_resnet.calibration.int8_weights import (has_int8_weights, int8_weights,
                                                  int8_weights_file)
from edge_resnet.core import InputError
from edge_resnet.preprocessing import preprocess_batch


@pytest.fixture(scope="module")
def qdq_model(digits_onnx: Path, digits_dirs: Any, tmp_path_factory: pytest.TempPathFactory
              ) -> Path:
    """A minmax INT8 QDQ model of the digits ResNet50 (float weights, in-graph Q/DQ)."""
    from edge_resnet.calibration import CalibrationOptions, calibrate

    out = tmp_path_factory.mktemp("int8w")
    from edge_resnet.calibration.options import ReaderOptions

    options = CalibrationOptions(methods=("minmax",), progress=False,
                                 reader=ReaderOptions(num_images=32, batch_size=16))
    result = calibrate(digits_onnx, digits_dirs.train_dir, out, options)
    return Path(result.methods["minmax"].qdq_path)


def _logits(path: Path, images: List[np.ndarray]) -> np.ndarray:
    with load_backend("onnxruntime", path) as model:
        return model.infer(preprocess_batch(images, model.spec)).logits


def test_int8_weights_identical_outputs_and_4x_smaller(
        qdq_model: Path, tmp_path: Path,
        digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    out = tmp_path / "model.int8w.onnx"
    result = int8_weights_file(qdq_model, out)
    assert result.converted == 53  # every Conv weight of ResNet50 (FC stays float)
    ratio = result.bytes_before / result.bytes_after
    assert 3.5 < ratio < 4.1, ratio
    model = onnx.load(str(out))
    assert has_int8_weights(model) and check_qdq(model) == []
    inits = {i.name: i for i in model.graph.initializer}
    dq_sources = [n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
                  and n.input[0] in inits]
    assert len(dq_sources) == 53
    assert all(inits[s].data_type == onnx.TensorProto.INT8 for s in dq_sources)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in inits
                   for n in model.graph.node)
    images = [img for img, _ in digits_test_images[:32]]
    np.testing.assert_array_equal(_logits(out, images), _logits(qdq_model, images))


def test_int8_weights_refuses_models_without_weight_quantizers(digits_onnx: Path,
                                                               tmp_path: Path) -> None:
    assert int8_weights(onnx.load(str(digits_onnx))) == 0
    with pytest.raises(InputError, match="no QuantizeLinear on float weight initializers"):
        int8_weights_file(digits_onnx, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_int8_weights_bundle_is_smaller_and_passes_its_health_check(
        qdq_model: Path, digits_onnx: Path, tmp_path: Path, fleet: Tuple[Path, Path]) -> None:
    from edge_resnet.bundle.create import BundleSpec, create_bundle
    from edge_resnet.bundle.install import InstallOptions, install
    from edge_resnet.bundle.signing import load_certificate

    sizes = {}
    for flag in (False, True):
        out = tmp_path / f"digits-{flag}.bundle"
        manifest = create_bundle(BundleSpec(
            name="digits", version="1.0.0", models=[qdq_model], reference=digits_onnx,
            key=fleet[0], out=out, int8_weights=flag, golden_count=2))
        sizes[flag] = out.stat().st_size
        assert manifest.provenance["int8_weights"] == ([f"models/{qdq_model.name}"] if flag
                                                       else [])
    assert sizes[False] / sizes[True] > 3.5, sizes
    release = install(tmp_path / "digits-True.bundle", load_certificate(fleet[1]),
                      tmp_path / "root", InstallOptions())
    assert has_int8_weights(onnx.load(str(release.model)))


def test_accuracy_gate_sees_no_change(qdq_model: Path, digits_dirs: Any,
                                      tmp_path: Path) -> None:
    """The evaluation gate with the float-weight QDQ model as reference: zero drop, full
    agreement, zero logit difference on the whole digits test split."""
    from edge_resnet.evaluation import evaluate

    out = tmp_path / "model.int8w.onnx"
    int8_weights_file(qdq_model, out)
    report = evaluate(qdq_model, {"int8-weights": out}, digits_dirs.test_dir, max_drop=0.0,
                      min_agreement=1.0, progress=False)
    candidate = report.candidates[0]
    assert report.gate_passed is True
    assert report.images_evaluated > 100
    assert candidate.top1 == report.reference.top1 and candidate.drop_top1 == 0.0
    assert candidate.agreement is not None
    assert candidate.agreement.disagreements == 0
    assert candidate.agreement.max_abs_logit_diff == 0.0
