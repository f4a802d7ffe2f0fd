"""Per-model backends in evaluation (``--candidate openvino:model.onnx``) and ``--backend auto``.

The candidate is the digits model with class 0's logit raised by 1e4 (``class0_digits_onnx``):
it predicts "0" for every image whatever the trained model is, so its numbers are known exactly
on any backend: right exactly on the class-0 images, in agreement exactly where the reference
says "0".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_resnet.backends.reference import ModelRef
from edge_resnet.cli import main
from edge_resnet.core import InputError
from edge_resnet.evaluation import evaluate


def _needs_openvino() -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed "
                                           "(pip install edge-resnet[openvino])")


def test_each_model_runs_on_its_own_backend(digits_onnx: Path, class0_digits_onnx: Path,
                                            digits_dirs: Any) -> None:
    _needs_openvino()
    report = evaluate(f"onnxruntime:{digits_onnx}",
                      {"ov": f"openvino:{class0_digits_onnx}", "auto": str(class0_digits_onnx),
                       "ref-typed": ModelRef(str(digits_onnx), "onnxruntime", {"threads": 1})},
                      digits_dirs.test_dir, num_images=24, seed=1, progress=False)
    ref, ov, auto, typed = report.models
    assert [m.backend for m in report.models] == ["onnxruntime", "openvino", "onnxruntime",
                                                  "onnxruntime"]
    assert ref.backend_reason == typed.backend_reason == "asked for (onnxruntime)"
    assert ov.backend_reason == "asked for (openvino)"
    assert auto.backend_reason.startswith("float ONNX model")
    assert report.reference.name == Path(digits_onnx).stem  # the prefix is not in the name
    class0 = report.class_counts[0] if report.class_counts else -1
    for cand in (ov, auto):
        assert cand.top1_correct == class0
        assert cand.paired is not None and cand.agreement is not None
        assert cand.paired.candidate_correct == class0
    assert ov.agreement.disagreements == auto.agreement.disagreements  # type: ignore[union-attr]
    assert typed.agreement is not None and typed.agreement.disagreements == 0


def test_cli_candidate_prefixes_reach_the_report(digits_onnx: Path, class0_digits_onnx: Path,
                                                 digits_dirs: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    _needs_openvino()
    out = tmp_path / "refs"
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", f"openvino:{class0_digits_onnx}", "--name", "ov",
                 "--num-images", "12", "--exact-qdq", "--report", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["reference"]["backend"] == "onnxruntime"
    assert saved["reference"]["backend_reason"].startswith("float ONNX model")
    assert saved["candidates"][0]["backend"] == "openvino"
    assert saved["candidates"][0]["backend_reason"] == "asked for (openvino)"
    markdown = out.with_suffix(".md").read_text()
    assert "## Backends" in markdown
    assert "| ov | openvino | CPU | asked for (openvino) |" in markdown
    assert "backend of ov: openvino (asked for (openvino))" in err


def test_cli_refuses_unknown_backend_prefix(digits_onnx: Path, digits_dirs: Any,
                                            capsys: pytest.CaptureFixture) -> None:
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", "tensorrtx:model.engine", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "unknown backend 'tensorrtx'; choose one of: auto, onnxruntime, openvino, pytorch, " \
           "tensorrt" in err[0]


def test_tensorrt_prefix_opens_the_tensorrt_backend(digits_onnx: Path, digits_dirs: Any,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from edge_resnet.core import DependencyError
    from edge_resnet.engine.trt_api import import_tensorrt

    try:
        import_tensorrt()
    except DependencyError:
        pass
    else:
        pytest.skip("TensorRT is installed: the hardware suite (tests/tensorrt) covers engines")
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"not an engine")
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", f"tensorrt:{engine}", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "TensorRT is not installed" in err[0]
    # an engine needs no prefix: auto sends it to TensorRT too
    assert main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", str(engine), "--no-progress"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_exact_qdq_needs_an_onnxruntime_model(digits_onnx: Path, digits_dirs: Any) -> None:
    _needs_openvino()
    with pytest.raises(InputError, match="exact_qdq is an onnxruntime backend option and no "
                                         "model runs on onnxruntime"):
        evaluate(digits_onnx, [digits_onnx], digits_dirs.test_dir, backend="openvino",
                 backend_options={"exact_qdq": True}, num_images=4, progress=False)


def test_cli_checkpoint_candidate_runs_on_pytorch_by_auto(
        digits_onnx: Path, digits_checkpoint: Path, digits_dirs: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torch", reason="the pytorch backend needs torch (.[host] or .[pytorch])")
    out = tmp_path / "pt"
    code = main(["eval", str(digits_dirs.test_dir), "--reference", str(digits_onnx),
                 "--candidate", str(digits_checkpoint), "--name", "checkpoint",
                 "--num-images", "16", "--report", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    cand = json.loads(out.with_suffix(".json").read_text())["candidates"][0]
    assert cand["backend"] == "pytorch"
    assert cand["backend_reason"] == "a PyTorch checkpoint (.pt) runs in PyTorch"
    assert cand["agreement"]["samples"] == 16
    assert cand["agreement"]["disagreements"] <= 1  # the same network, FP32 (CPU or TF32-off)
