"""PyTorch backend on the CPU with the trained digits checkpoint (CUDA: tests/gpu)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.backends.base import backend_names
from edge_resnet.core import BackendError, DependencyError, InputError, ModelError
from edge_resnet.preprocessing import preprocess_batch


def _near_ties(logits: np.ndarray, margin: float) -> int:
    top2 = np.sort(logits, axis=1)[:, -2:]
    return int((top2[:, 1] - top2[:, 0] < margin).sum())


def test_registered_and_matches_onnxruntime(digits_checkpoint: Path, digits_onnx: Path,
                                            digits_test_images: List[Tuple[np.ndarray, int]]
                                            ) -> None:
    assert "pytorch" in backend_names()
    images = [img for img, _ in digits_test_images[:64]]
    with load_backend("pytorch", digits_checkpoint, threads=2, device="cpu") as pt, \
            load_backend("onnxruntime", digits_onnx, threads=2) as ort:
        assert pt.spec.labels == ort.spec.labels and pt.spec.resolution == ort.spec.resolution
        assert pt.info.name == "pytorch" and pt.info.device == "cpu"
        assert pt.info.precision == "fp32"
        batch = preprocess_batch(images, pt.spec)
        ours, ref = pt.infer(batch).logits, ort.infer(batch).logits
    assert ours.shape == ref.shape == (64, 10) and ours.dtype == np.float32
    scale = float(np.abs(ref).max())
    # the ONNX graph has BatchNorm folded into the convolutions: float rounding only
    assert np.abs(ours - ref).max() <= 1e-4 * scale + 1e-4
    differ = int((ours.argmax(1) != ref.argmax(1)).sum())
    assert differ <= _near_ties(ref, 2e-4 * scale + 2e-4)


def test_eval_against_the_fp32_onnx_reference(digits_checkpoint: Path, digits_onnx: Path,
                                              digits_dirs: Any) -> None:
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.backends.pytorch import PyTorchBackend
    from edge_resnet.evaluation.evaluate import evaluate

    with OnnxRuntimeBackend(digits_onnx, threads=2) as ref, \
            PyTorchBackend(digits_checkpoint, device="cpu", threads=2) as cand:
        report = evaluate(ref, {"pytorch-cpu": cand}, digits_dirs.test_dir, batch_size=64,
                          num_images=128, progress=False, max_drop=0.0)
    result = report.candidates[0]
    assert result.backend == "pytorch" and report.images_evaluated == 128
    assert result.agreement is not None and result.agreement.disagreements <= 1
    assert result.top1 is not None and report.reference.top1 is not None
    assert abs(result.top1 - report.reference.top1) <= 1 / 128 + 1e-9


def test_refusals(digits_checkpoint: Path, digits_onnx: Path) -> None:
    from edge_resnet.backends.pytorch import PyTorchBackend

    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        PyTorchBackend(digits_checkpoint, device="cpu", precision="fp16")
    with pytest.raises(InputError, match="fp32 or fp16"):
        PyTorchBackend(digits_checkpoint, device="cpu", precision="int8")
    with pytest.raises(ModelError, match="backend=onnxruntime"):
        PyTorchBackend(digits_onnx)
    with pytest.raises(InputError, match="cpu or cuda"):
        PyTorchBackend(digits_checkpoint, device="meta")
    with pytest.raises(InputError, match="unknown options"):
        PyTorchBackend(digits_checkpoint, device="cpu", providers=["x"])
    with PyTorchBackend(digits_checkpoint, device="cpu") as backend:
        assert not backend.gpu_frames
        with pytest.raises(BackendError, match="preprocess=cpu"):
            backend.infer_frames([np.zeros((32, 32, 3), np.uint8)])
        with pytest.raises(InputError, match="does not fit"):
            backend.infer(np.zeros((1, 3, 16, 16), np.float32))
        with pytest.raises(InputError, match="float"):
            backend.infer(np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(BackendError, match="closed"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_cuda_without_a_gpu_is_a_clear_error(digits_checkpoint: Path) -> None:
    import torch

    from edge_resnet.backends.pytorch import PyTorchBackend

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device; tests/gpu covers the CUDA path")
    with pytest.raises(DependencyError, match="device=cpu"):
        PyTorchBackend(digits_checkpoint, device="cuda")
