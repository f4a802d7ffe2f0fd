"""The parts of the builder that run without TensorRT: heartbeat and the layer summary."""

from __future__ import annotations

import io
import json
import time

import pytest

from edge_resnet.core import DependencyError
from edge_resnet.engine.builder import Heartbeat, summarize_layers
from edge_resnet.engine.trt_api import import_tensorrt


def test_heartbeat_reports_phases_and_ticks() -> None:
    out = io.StringIO()
    with Heartbeat("x.engine", interval=0.05, stream=out) as beat:
        beat.set_phase("parsing ONNX")
        time.sleep(0.5)
        beat.set_phase("building")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("building x.engine: starting (")
    assert "building x.engine: parsing ONNX (0 s)" in lines
    assert sum("parsing ONNX" in line for line in lines) >= 3  # ticks between phase changes
    assert lines[-1].startswith("building x.engine: building (")


def test_summarize_layers_counts_output_formats() -> None:
    # The shape of `EngineInspector.get_engine_information(LayerInformationFormat.JSON)` with
    # DETAILED profiling verbosity (TensorRT developer guide, "Engine Inspector").
    report = {"Layers": [
        {"Name": "conv1 + relu", "LayerType": "CaskConvolution",
         "Outputs": [{"Name": "a", "Format/Datatype": "Int8 NC/32HW32"}]},
        {"Name": "fc", "LayerType": "CaskGemm", "Outputs": [{"Name": "logits", "Format/Datatype": "Half"}]},
        {"Name": "reformat", "LayerType": "Reformat",
         "Outputs": [{"Name": "b", "Format/Datatype": "Int8 NC/32HW32"}]}],
        "Bindings": ["input", "logits"]}
    summary = summarize_layers(json.dumps(report))
    assert summary == {"layers": 3, "output_formats": {"Int8 NC/32HW32": 2, "Half": 1}}
    assert summarize_layers("not json")["layers"] is None


def test_stubs_only_tensorrt_is_not_tensorrt() -> None:
    try:
        import_tensorrt()
    except DependencyError as exc:
        assert "pip install tensorrt" in str(exc) and "python3-libnvinfer" in str(exc)
    else:
        pytest.skip("a real TensorRT is installed here")


def test_cache_reader_serves_the_cache_bytes_under_the_given_calibrator_class() -> None:
    """One body for every calibrator class: the instance subclasses the class TensorRT matches
    against the cache header, runs its constructor, and hands over the bytes and no batches."""
    from edge_resnet.engine.builder import _cache_reader

    constructed = []

    class FakeEntropy2:
        def __init__(self) -> None:
            constructed.append(self)

    calibrator = _cache_reader(FakeEntropy2, b"TRT-8502-EntropyCalibration2\n", 8)
    assert isinstance(calibrator, FakeEntropy2)
    assert constructed == [calibrator]
    assert type(calibrator).__name__ == "CacheOnlyFakeEntropy2"
    assert calibrator.get_batch_size() == 8
    assert calibrator.get_batch(["input"]) == []
    assert calibrator.read_calibration_cache() == b"TRT-8502-EntropyCalibration2\n"
    assert calibrator.write_calibration_cache(b"new") is None
