"""OpenVINO backend: same protocol as ONNX Runtime, same numbers on the digits model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest

from edge_resnet.backends import backend_names, load_backend
from edge_resnet.core import InputError, ModelError
from edge_resnet.preprocessing import preprocess_batch


pytestmark = pytest.mark.openvino
pytest.importorskip("openvino", reason="the openvino extra is not installed "
                                       "(pip install edge-resnet[openvino])")


def _batch(images: List[Tuple[np.ndarray, int]], spec: Any, n: int = 64) -> np.ndarray:
    return preprocess_batch([img for img, _ in images[:n]], spec)


def test_registered() -> None:
    assert "openvino" in backend_names()


def test_matches_onnxruntime_on_digits(digits_onnx: Path, digits_test_images: list) -> None:
    with load_backend("onnxruntime", digits_onnx) as ort, \
            load_backend("openvino", digits_onnx, threads=2) as ov:
        assert ov.spec == ort.spec
        batch = _batch(digits_test_images, ov.spec)
        ref, got = ort.infer(batch).logits, ov.infer(batch).logits
        assert ov.info.precision == "fp32" and ov.info.name == "openvino"
        assert ov.info.details["inference_precision"] == "f32"   # no silent bf16
    assert got.shape == ref.shape == (64, 10)
    scale = float(np.abs(ref).max())
    assert float(np.abs(got - ref).max()) <= 1e-4 * scale + 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_single_and_batched_agree(digits_onnx: Path, digits_test_images: list) -> None:
    with load_backend("openvino", digits_onnx, threads=2) as ov:
        batch = _batch(digits_test_images, ov.spec, 8)
        whole = ov.infer(batch).logits
        ones = np.concatenate([ov.infer(batch[i:i + 1]).logits for i in range(8)])
    np.testing.assert_allclose(whole, ones, rtol=1e-4, atol=1e-4)


def test_fused_model_takes_uint8_frames(digits_fused_onnx: Path, digits_onnx: Path,
                                        digits_test_images: list) -> None:
    with load_backend("openvino", digits_fused_onnx, threads=2) as fused, \
            load_backend("openvino", digits_onnx, threads=2) as plain:
        bgr = [np.ascontiguousarray(img[:, :, ::-1]) for img, _ in digits_test_images[:16]]
        a = fused.infer(preprocess_batch(bgr, fused.spec, color_order="BGR")).logits
        b = plain.infer(preprocess_batch(bgr, plain.spec, color_order="BGR")).logits
        assert fused.input_dtype == np.uint8
        with pytest.raises(InputError, match="fused in-graph"):
            fused.infer(np.zeros((1, 32, 32, 3), np.float32))
    assert (a.argmax(1) == b.argmax(1)).all()
    np.testing.assert_allclose(a, b, atol=1e-3 * float(np.abs(b).max()))


def test_features_output(digits_features_onnx: Path, digits_test_images: list) -> None:
    with load_backend("openvino", digits_features_onnx) as ov, \
            load_backend("onnxruntime", digits_features_onnx) as ort:
        batch = _batch(digits_test_images, ov.spec, 4)
        a, b = ov.infer(batch), ort.infer(batch)
    assert a.features is not None and a.features.shape == (4, 2048)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4 * float(np.abs(b.features).max()))


def test_errors(digits_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_backend("openvino", tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError):
        load_backend("openvino", broken)
    with pytest.raises(InputError, match="unknown options"):
        load_backend("openvino", digits_onnx, providers=["x"])
    with pytest.raises(InputError, match="inference_precision"):
        load_backend("openvino", digits_onnx, inference_precision="int4")
    backend = load_backend("openvino", digits_onnx)
    backend.close()
    from edge_resnet.core import BackendError
    with pytest.raises(BackendError, match="closed"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
