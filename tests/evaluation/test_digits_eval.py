"""Integration: the digits ResNet50 exported to FP32 ONNX, evaluated on the digits test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.evaluation import evaluate, predict
from edge_resnet.images import ImageFolder


def test_digits_fp32_against_itself(digits_onnx: Path, digits_dirs: Any) -> None:
    report = evaluate(digits_onnx, {"fp32-copy": digits_onnx}, digits_dirs.test_dir,
                      batch_size=64, max_drop=0.0, progress=False)
    cand = report.candidate("fp32-copy")
    assert report.images_evaluated == sum(digits_dirs.counts["test"].values()) == 359
    assert not report.skipped and report.labels == tuple(str(d) for d in range(10))
    assert report.reference.top1 is not None  # how well the fixture is trained: tests/training
    assert report.reference.top5 is not None and report.reference.top5 >= report.reference.top1
    assert cand.drop_top1 == 0.0 and cand.top1 == report.reference.top1
    assert cand.agreement is not None and cand.agreement.agreement == 1.0
    assert cand.agreement.max_abs_logit_diff == 0.0 and cand.agreement.kl_max == 0.0
    assert report.gate_passed is True
    assert report.class_counts == [digits_dirs.counts["test"][str(d)] for d in range(10)]


def test_digits_accuracy_matches_a_direct_prediction(digits_onnx: Path, digits_dirs: Any) -> None:
    # predict() over the folder, argmax by hand, compared with the report's count.
    with load_backend("onnxruntime", digits_onnx) as backend:
        folder = ImageFolder(digits_dirs.test_dir, labels=backend.spec.labels)
        result = predict(backend, folder, batch_size=50)
    assert result.labels is not None
    correct = int((result.logits.argmax(axis=1) == result.labels).sum())
    report = evaluate(digits_onnx, [], digits_dirs.test_dir, num_images=None, progress=False)
    assert report.reference.top1_correct == correct
    assert report.reference.top1 == pytest.approx(100.0 * correct / 359)
    assert np.isfinite(result.logits).all()
