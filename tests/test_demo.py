"""``edge-resnet demo`` end to end: every artifact written under --out, numbers consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_resnet.cli import main


@pytest.mark.slow
def test_demo_cli_writes_every_stage_under_out(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"demo written to {out}" in printed
    names = {p.name for p in out.iterdir()}
    assert {"digits", "digits_resnet50.pt", "digits_fp32.onnx", "digits_fp32_bgr_u8.onnx",
            "eval.json", "eval.md", "demo-summary.json"} <= names
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["init"] == "scratch"
    one_image = 100.0 / 359  # accuracies are in percent
    # ONNX Runtime and PyTorch agree on the 359 test images (at most one borderline flip),
    # and the in-graph uint8 BGR preprocessing matches the host preprocessing.
    assert abs(summary["onnx_test_top1_pct"] - summary["torch_test_top1_pct"]) <= one_image
    assert abs(summary["fused_test_top1_pct"] - summary["onnx_test_top1_pct"]) <= one_image
    assert summary["parity_max_abs_diff"] < 1e-3
    report = json.loads((out / "eval.json").read_text())
    assert report["images_evaluated"] == 359
    # Every precision the demo calibrated is in the one report, against the FP32 reference.
    names = {m["name"] for m in report["candidates"]}
    assert {"fp16", "int8-entropy", "int8-minmax", "int8-mse", "int8-percentile"} <= names
    assert set(summary["precision_top1_pct"]) == names | {"fp32"}
    assert (out / "calibration").is_dir()
    assert "int8-entropy" in printed
