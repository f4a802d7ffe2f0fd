"""TensorRT calibration cache: format, round trip, names of the graph TensorRT parses."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import onnx
import pytest

from edge_resnet.calibration.trt_cache import parse_trt_version, read_cache, write_cache
from edge_resnet.core import InputError


def test_cache_format_and_names_match_the_fp32_graph(calibrated: Any, digits_onnx: Path) -> None:
    art = calibrated.methods["entropy"]
    lines = art.cache_path.read_text().splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert all(re.fullmatch(r".+: [0-9a-f]{8}", ln) for ln in lines[1:])
    graph = onnx.load(str(digits_onnx)).graph
    tensors = {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
    cache = read_cache(art.cache_path)
    assert set(cache.scales) <= tensors
    assert graph.input[0].name in cache.scales
    conv_outputs = {n.output[0] for n in graph.node if n.op_type in ("Conv", "Relu", "Add")}
    assert conv_outputs <= set(cache.scales)  # every layer output TensorRT asks a range for
    amax = json.loads(art.ranges_path.read_text())["amax"]
    for name, scale in cache.scales.items():
        assert scale * 127.0 == pytest.approx(amax[name], rel=1e-6)
    # every method's cache is labelled for the calibrator that reads it (trtexec: entropy2),
    # whatever range method made the scales, and the file name says so
    for method, written in calibrated.methods.items():
        assert read_cache(written.cache_path).algorithm == "EntropyCalibration2", method
        assert written.cache_path.name.endswith(f".{method}.trt8601.entropy2.cache")


@pytest.mark.parametrize("calibrator,header", [("minmax", "MinMaxCalibration"),
                                               ("legacy", "LegacyCalibration")])
def test_cache_calibrator_choice_via_cli(calibrated: Any, digits_onnx: Path, digits_dirs: Any,
                                         tmp_path: Path, calibrator: str, header: str) -> None:
    from edge_resnet.cli import main

    code = main(["calibrate", str(digits_onnx), "--out", str(tmp_path), "--method", "minmax",
                 "--stats", str(calibrated.stats_path), "--cache-calibrator", calibrator,
                 "--trt-version", "10.3.0", "--no-progress"])
    assert code == 0
    path = tmp_path / f"{digits_onnx.stem}.minmax.trt100300.{calibrator}.cache"
    assert read_cache(path).algorithm == header
    want = read_cache(calibrated.methods["minmax"].cache_path).scales
    assert read_cache(path).scales == want  # same scales, another reader


def test_unknown_calibrator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown cache calibrator 'MinMax'.*entropy2"):
        write_cache(tmp_path / "c.cache", {"input": 1.0}, calibrator="MinMax")
    assert not (tmp_path / "c.cache").exists()


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    ranges = {"input": 2.64, "/layer1/layer1.0/conv1/Conv_output_0": 0.0123, "x:0": 7.5}
    path = write_cache(tmp_path / "c.cache", ranges, calibrator="minmax", trt_version="10.3.0")
    cache = read_cache(path)
    assert (cache.version, cache.algorithm) == (100300, "MinMaxCalibration")
    for name, value in ranges.items():
        want = struct.unpack(">f", struct.pack(">f", value / 127.0))[0]
        assert cache.scales[name] == want
    assert path.read_text().splitlines()[1] == f"input: {struct.pack('>f', 2.64 / 127).hex()}"


@pytest.mark.parametrize("given,want", [("8.5.2", 8502), ("8.6.1", 8601), (8502, 8502),
                                        ("10.3.0", 100300), ("10.13", 101300), ("100300", 100300)])
def test_version_digits(given: Any, want: int) -> None:
    assert parse_trt_version(given) == want


@pytest.mark.parametrize("bad", ["11.4.1", "7.1", "latest", 110000])
def test_unsupported_versions_are_refused(bad: Any) -> None:
    with pytest.raises(InputError, match="TensorRT version"):
        parse_trt_version(bad)


@pytest.mark.parametrize("given", ["8.5.2", "8.6.1", "8.4.1", 8502, "8601", "10.3.0", "10.13",
                                   "100300", "10.7.0"])
def test_version_rule_is_the_devices_one(given: Any) -> None:
    from edge_resnet.devices.trt_versions import cache_version

    assert parse_trt_version(given) == cache_version(given)


@pytest.mark.parametrize("bad, why", [("9.2", "written for TensorRT 8.x and 10.x only"),
                                      ("11.0", "implicit INT8 was removed in TensorRT 11"),
                                      ("4.0", "is not a TensorRT release")])
def test_refusals_say_why(bad: str, why: str) -> None:
    with pytest.raises(InputError, match=f"TensorRT version .*{why}"):
        parse_trt_version(bad)
