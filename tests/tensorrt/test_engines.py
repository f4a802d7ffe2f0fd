"""Engines from the digits model on real TensorRT: accuracy gates, cache, reports, pipeline, DLA.

Needs TensorRT + a CUDA GPU (a Jetson, or x86 with an NVIDIA GPU); skips with the reason
otherwise. Gates from issue 9: top-1 drop against the FP32 ONNX on ONNX Runtime at most
0.1 points for FP32/FP16 engines and 0.5 points for INT8.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.core import InputError, ModelError
from edge_resnet.devices.trt_versions import dla_supported
from trt_helpers import TrtMachine, build, top1

pytestmark = pytest.mark.tensorrt

GATES = {"fp32": 0.1, "fp16": 0.1, "int8": 0.5}  # percentage points


def _models(precision: str, digits_onnx: Path, calibrated: Dict[str, Path]) -> List[Path]:
    if precision == "fp32":
        return [digits_onnx]
    if precision == "fp16":
        return [digits_onnx, calibrated["fp16"]]
    return [calibrated["qdq"]]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_meets_the_accuracy_gate(precision: str, trt_machine: TrtMachine, digits_onnx: Path,
                                        calibrated: Dict[str, Path], engines_dir: Path,
                                        digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    entry = build(trt_machine, _models(precision, digits_onnx, calibrated), precision, engines_dir)
    with load_backend("onnxruntime", digits_onnx) as reference:
        ref = top1(reference, digits_test_images)
    with load_backend("tensorrt", entry.engine) as engine:
        assert engine.info.precision == precision
        got = top1(engine, digits_test_images)
    drop = (ref - got) * 100
    print(f"{precision}: FP32 ONNX {ref:.4f}, engine {got:.4f}, drop {drop:.2f} pt")
    assert drop <= GATES[precision], f"{precision} engine drops {drop:.2f} pt (gate {GATES[precision]})"


def test_implicit_int8_from_calibration_cache(trt_machine: TrtMachine, digits_onnx: Path,
                                              calibrated: Dict[str, Path], engines_dir: Path,
                                              digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    if trt_machine.major >= 11:
        pytest.skip("TensorRT 11 removed implicit INT8 (calibration caches)")
    entry = build(trt_machine, [digits_onnx], "int8", engines_dir, cache=calibrated["cache"])
    with load_backend("onnxruntime", digits_onnx) as reference, \
            load_backend("tensorrt", entry.engine) as engine:
        drop = (top1(reference, digits_test_images) - top1(engine, digits_test_images)) * 100
    assert drop <= GATES["int8"]


def test_cache_hit_miss_and_reports(trt_machine: TrtMachine, digits_onnx: Path, tmp_path: Path) -> None:
    first = build(trt_machine, [digits_onnx], "fp32", tmp_path, batch="1:4:8")
    second = build(trt_machine, [digits_onnx], "fp32", tmp_path, batch="1:4:8")
    assert (first.hit, second.hit) == (False, True) and first.engine == second.engine
    other = build(trt_machine, [digits_onnx], "fp32", tmp_path, batch="2")
    assert not other.hit and other.engine != first.engine
    record = json.loads(first.sidecar.read_text())
    log = first.engine.with_name(record["build_log"])
    layers = json.loads(first.engine.with_name(record["layer_report"]).read_text())
    assert log.stat().st_size > 0 and isinstance(layers, dict) and record["layers"]["layers"] > 0
    assert Path(record["plan"]["timing_cache"]).stat().st_size > 0
    assert record["spec"]["edge_resnet.labels"]


def test_foreign_engine_refused_before_tensorrt(trt_machine: TrtMachine, digits_onnx: Path,
                                                tmp_path: Path) -> None:
    entry = build(trt_machine, [digits_onnx], "fp32", tmp_path)
    foreign = tmp_path / "foreign" / entry.engine.name
    foreign.parent.mkdir()
    shutil.copy(entry.engine, foreign)
    record = json.loads(entry.sidecar.read_text())
    record["key"]["tensorrt"] = "8.5.2" if trt_machine.major >= 10 else "10.3.0"
    foreign.with_name(foreign.name + ".json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="engines only load in the TensorRT that built them"):
        load_backend("tensorrt", foreign)


def test_batch_outside_profile_is_refused(trt_machine: TrtMachine, digits_onnx: Path, tmp_path: Path,
                                          digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    from edge_resnet.preprocessing import preprocess_batch

    entry = build(trt_machine, [digits_onnx], "fp32", tmp_path, batch="1:2:4")
    with load_backend("tensorrt", entry.engine) as engine:
        batch = preprocess_batch([im for im, _ in digits_test_images[:5]], engine.spec)
        with pytest.raises(InputError, match="outside the engine's profile 1..4"):
            engine.infer(batch)
        assert engine.infer(batch[:4]).logits.shape == (4, engine.spec.num_classes)


def test_pipeline_runs_an_engine_on_video(trt_machine: TrtMachine, digits_onnx: Path, engines_dir: Path,
                                          digits_test_images: Any, tmp_path: Path) -> None:
    from edge_resnet.runtime.pipeline import PipelineConfig
    from edge_resnet.runtime.service import build_pipeline
    from trt_helpers import runtime_media

    digit_frames, write_video = runtime_media()

    frames, labels = digit_frames(digits_test_images, 40)
    video = write_video(tmp_path / "digits.avi", frames)
    entry = build(trt_machine, [digits_onnx], "fp16", engines_dir)
    out = tmp_path / "events.jsonl"
    snap = build_pipeline(entry.engine, str(video), [str(out)], backend="tensorrt",
                          config=PipelineConfig(max_batch=8)).run()
    events = [e for e in map(json.loads, out.read_text().splitlines()) if e["type"] == "result"]
    assert snap["counts"]["processed"] == 40 and len(events) == 40
    with load_backend("tensorrt", entry.engine) as engine:
        names = engine.spec.labels
    accuracy = np.mean([e["label"] == names[y] for e, y in zip(events, labels)])
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_dla_engine(precision: str, trt_machine: TrtMachine, digits_onnx: Path,
                    calibrated: Dict[str, Path], engines_dir: Path,
                    digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    profile = trt_machine.profile
    if not dla_supported(trt_machine.trt_version, profile.dla_cores):
        pytest.skip(f"no DLA usable here ({profile.display_name}, TensorRT {trt_machine.trt_version})")
    if precision == "int8" and trt_machine.major < 11:
        models, cache = [digits_onnx], calibrated["cache"]
    else:
        models, cache = _models(precision, digits_onnx, calibrated), None
    entry = build(trt_machine, models, precision, engines_dir, batch="8", cache=cache, dla=0)
    record = json.loads(entry.sidecar.read_text())
    print(f"DLA {precision}: {len(record['dla_gpu_fallback'])} layers fall back to the GPU: "
          f"{record['dla_gpu_fallback'][:5]}")
    with load_backend("onnxruntime", digits_onnx) as reference, \
            load_backend("tensorrt", entry.engine) as engine:
        assert "DLA0" in engine.info.device
        drop = (top1(reference, digits_test_images) - top1(engine, digits_test_images)) * 100
    assert drop <= GATES[precision]
