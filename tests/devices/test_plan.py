"""plan_build over every profile x precision x TensorRT generation, and each refusal.

The expected outcomes are written out by hand from the facts doc (which JetPack ships which
TensorRT per module; what each generation builds from), not derived from the code under test.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Set

import pytest

from edge_resnet.core import InputError
from edge_resnet.devices.plan import (
    BatchProfile, BuildArtifacts, BuildRequest, OnnxArtifact, PlanError, plan_build)
from edge_resnet.devices.profiles import get_profile, profile_names
from edge_resnet.devices.trt_versions import cache_version

VERSIONS = ["8.5.2", "8.6.2", "10.3.0", "10.13.3", "11.4.1"]
# Which of VERSIONS each module's JetPacks ship (x86 takes any TensorRT >= 8.5).
AVAILABLE: Dict[str, Set[str]] = {
    "nano": set(), "tx2": set(),
    "xavier-nx": {"8.5.2"}, "agx-xavier": {"8.5.2"},
    "orin-nano-4gb": {"8.5.2", "8.6.2", "10.3.0"}, "orin-nano-8gb": {"8.5.2", "8.6.2", "10.3.0"},
    "orin-nx-8gb": {"8.5.2", "8.6.2", "10.3.0"}, "orin-nx-16gb": {"8.5.2", "8.6.2", "10.3.0"},
    "agx-orin-32gb": {"8.5.2", "8.6.2", "10.3.0", "11.4.1"},
    "agx-orin-64gb": {"8.5.2", "8.6.2", "10.3.0", "11.4.1"},
    "thor": {"10.13.3", "11.4.1"}, "x86-dgpu": set(VERSIONS)}
# (precision, generation) -> (input kind, flags, strongly typed) on the GPU.
GPU_OUTCOME = {
    ("fp32", 8): ("fp32", [], False), ("fp32", 10): ("fp32", [], False), ("fp32", 11): ("fp32", [], True),
    ("fp16", 8): ("fp32", ["FP16"], False), ("fp16", 10): ("fp16", [], True),
    ("fp16", 11): ("fp16", [], True),
    ("int8", 8): ("qdq", ["INT8", "FP16"], False), ("int8", 10): ("qdq", ["INT8", "FP16"], False),
    ("int8", 11): ("qdq", [], True)}


def _model(kind: str, **kw: object) -> OnnxArtifact:
    base = dict(path=f"/models/digits.{kind}.onnx", kind=kind, opset=17)
    base.update(kw)
    return OnnxArtifact(**base)  # type: ignore[arg-type]


ALL_MODELS = (_model("fp32"), _model("fp16"), _model("qdq"))


def _artifacts(models=ALL_MODELS, cache_for: Optional[str] = None,
               algo: str = "EntropyCalibration2") -> BuildArtifacts:
    if cache_for is None:
        return BuildArtifacts(models=models)
    return BuildArtifacts(models=models, calibration_cache="/models/digits.cache",
                          cache_header=(cache_version(cache_for), algo))


def _request(precision: str, **kw: object) -> BuildRequest:
    return BuildRequest(precision=precision, out_dir="/engines", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", profile_names())
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_gpu_matrix(device: str, version: str, precision: str) -> None:
    profile = get_profile(device)
    if precision == "int8" and device in ("nano", "tx2"):
        with pytest.raises(PlanError, match="no fast INT8.*precision=fp16"):
            plan_build(profile, version, _artifacts(), _request(precision))
        return
    if version not in AVAILABLE[device]:
        with pytest.raises(PlanError, match=f"does not run on {profile.display_name}"):
            plan_build(profile, version, _artifacts(), _request(precision))
        return
    plan = plan_build(profile, version, _artifacts(), _request(precision))
    kind, flags, strongly = GPU_OUTCOME[(precision, int(version.split(".")[0]))]
    assert (plan.input_kind, plan.flags, plan.strongly_typed) == (kind, flags, strongly)
    assert plan.input_model == f"/models/digits.{kind}.onnx"
    assert plan.dla_core is None and plan.calibration_cache is None
    assert plan.optimization_level == (None if version == "8.5.2" else 3)
    assert f"trt{version}" in plan.timing_cache and profile.name in plan.timing_cache
    json.dumps(plan.to_dict())


DLA_DEVICES = ["xavier-nx", "agx-xavier", "orin-nx-8gb", "orin-nx-16gb", "agx-orin-32gb", "agx-orin-64gb"]


@pytest.mark.parametrize("device", profile_names())
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_dla_matrix(device: str, version: str, precision: str) -> None:
    profile = get_profile(device)
    major = int(version.split(".")[0])
    artifacts = _artifacts(cache_for=version if major < 11 else None)
    run = lambda: plan_build(profile, version, artifacts, _request(precision, dla_core=0))  # noqa: E731
    if precision == "int8" and device in ("nano", "tx2"):
        with pytest.raises(PlanError, match="no fast INT8"):
            run()
        return
    if device not in DLA_DEVICES:
        with pytest.raises(PlanError, match="has no DLA; drop dla_core"):
            run()
        return
    if version not in AVAILABLE[device]:  # either refusal is right: both name the fix
        with pytest.raises(PlanError, match="does not run on|no DLA support"):
            run()
        return
    plan = run()
    assert plan.dla_core == 0 and plan.flags[-1] == "GPU_FALLBACK"
    if major == 11:  # 11.4 on AGX Orin: strongly typed from the matching ONNX
        assert (plan.input_kind, plan.strongly_typed) == (("fp16" if precision == "fp16" else "qdq"), True)
        assert plan.flags == ["GPU_FALLBACK"]
    elif precision == "fp16":
        assert (plan.input_kind, plan.flags) == ("fp32", ["FP16", "GPU_FALLBACK"])
    else:  # DLA INT8 before TensorRT 11: FP32 ONNX + calibration scales, never Q/DQ
        assert (plan.input_kind, plan.flags) == ("fp32", ["INT8", "FP16", "GPU_FALLBACK"])
        assert (plan.calibration_cache, plan.calibrator) == ("/models/digits.cache", "EntropyCalibration2")


def test_dla_dropped_between_10_8_and_11_3() -> None:
    # The DLA rule answers before the shipped-version rule: the fix it names is the relevant one.
    with pytest.raises(PlanError, match="TensorRT 11.0.0 has no DLA support"):
        plan_build(get_profile("agx-orin-64gb"), "11.0", _artifacts(), _request("fp16", dla_core=0))
    # 10.16 ships on AGX Orin (JetPack 7.2.0) but has no DLA.
    with pytest.raises(PlanError, match="TensorRT 10.16.0 has no DLA support"):
        plan_build(get_profile("agx-orin-32gb"), "10.16", _artifacts(), _request("fp16", dla_core=0))


def test_implicit_int8_from_fp32_and_cache() -> None:
    plan = plan_build(get_profile("orin-nx-16gb"), "8.6.2",
                      _artifacts(models=(_model("fp32"),), cache_for="8.6.2", algo="MinMaxCalibration"),
                      _request("int8"))
    assert (plan.input_kind, plan.calibrator, plan.flags) == ("fp32", "MinMaxCalibration", ["INT8", "FP16"])


@pytest.mark.parametrize("device,version,artifacts,request_kw,match", [
    ("thor", "11.4.1", _artifacts(cache_for="10.3.0"), dict(precision="int8"),
     "removed implicit INT8.*drop calibration_cache"),
    ("thor", "11.4.1", _artifacts(models=(_model("fp32"),)), dict(precision="int8"),
     "only from Q/DQ"),
    ("thor", "11.4.1", _artifacts(models=(_model("fp32"),)), dict(precision="fp16"),
     "precision from the ONNX.*FP16 ONNX"),
    ("orin-nx-16gb", "8.5.2", _artifacts(models=(_model("fp32"),)), dict(precision="int8"),
     "QDQ ONNX, or the FP32 ONNX with calibration_cache"),
    ("orin-nx-16gb", "8.5.2", _artifacts(models=(_model("fp32"),), cache_for="8.6.1"),
     dict(precision="int8"), "header says TensorRT 8601, the target runs 8502.*--trt-version 8.5.2"),
    ("orin-nx-16gb", "10.3.0", _artifacts(models=(_model("fp32"),), cache_for="10.3.0",
                                          algo="LegacyCalibration"),
     dict(precision="int8"), "names LegacyCalibration.*--cache-calibrator entropy2"),
    ("orin-nx-16gb", "10.3.0", _artifacts(cache_for="10.3.0"), dict(precision="int8"),
     "QDQ ONNX carries its scales"),
    ("orin-nx-16gb", "8.5.2", _artifacts(models=(_model("qdq"),)), dict(precision="int8", dla_core=0),
     "takes calibration scales, not Q/DQ"),
    ("orin-nx-16gb", "8.5.2", _artifacts(), dict(precision="fp32", dla_core=0), "FP16 and INT8 only"),
    ("orin-nx-8gb", "8.5.2", _artifacts(), dict(precision="fp16", dla_core=1), "1 DLA core.*dla_core=0$"),
    ("orin-nano-8gb", "10.3.0", _artifacts(), dict(precision="fp16", dla_core=0), "has no DLA"),
    ("orin-nx-16gb", "8.5.2", _artifacts(), dict(precision="fp16", dla_core=0,
                                                  batch=BatchProfile(1, 4, 8)), "fixed batch.*batch profile 4"),
    ("orin-nx-16gb", "8.5.2", _artifacts(), dict(precision="fp16", max_gpu_fallback=0), "give dla_core"),
    ("orin-nx-16gb", "8.5.2", _artifacts(), dict(precision="fp16", optimization_level=4),
     "no builder optimization level"),
    ("orin-nx-16gb", "8.6.2", _artifacts(), dict(precision="fp16", optimization_level=7), "use 0..5"),
    ("orin-nx-16gb", "8.5.2", _artifacts(models=(_model("fp32", opset=18),)), dict(precision="fp32"),
     "opset 18.*reads up to 17: re-export with opset 17"),
    ("orin-nx-16gb", "10.3.0", _artifacts(models=(_model("fp32", batch=1),)),
     dict(precision="fp32", batch=BatchProfile(1, 8, 16)), "fixed batch of 1"),
    ("x86-dgpu", "8.4.1", _artifacts(models=(_model("fp32", input_dtype="uint8"),)),
     dict(precision="fp32"), "uint8 frames.*8.5\\+"),
    ("x86-dgpu", "8.4.1", _artifacts(), dict(precision="fp32"), "older than 8.5"),
    ("x86-dgpu", "10.3.0", _artifacts(models=(_model("fp32"), _model("fp32"))), dict(precision="fp32"),
     "same kind"),
    ("x86-dgpu", "10.3.0", _artifacts(models=(_model("qdq"),)), dict(precision="fp32"), "needs the FP32 ONNX"),
    ("x86-dgpu", "10.3.0", _artifacts(), dict(precision="bf16"), "choose fp32, fp16, int8"),
])
def test_refusals_say_what_to_do(device: str, version: str, artifacts: BuildArtifacts,
                                 request_kw: dict, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        plan_build(get_profile(device), version, artifacts, _request(**request_kw))


def test_fused_uint8_input_is_planned_on_8_5() -> None:
    plan = plan_build(get_profile("xavier-nx"), "8.5.2",
                      _artifacts(models=(_model("fp32", input_dtype="uint8"),)), _request("fp16"))
    assert plan.input_dtype == "uint8" and plan.flags == ["FP16"]


def test_workspace_and_compute_capability() -> None:
    nano4 = plan_build(get_profile("orin-nano-4gb"), "10.3.0", _artifacts(), _request("fp16"))
    assert nano4.workspace_bytes == 1 << 30  # a quarter of 4 GiB shared memory
    agx = plan_build(get_profile("agx-orin-64gb"), "10.3.0", _artifacts(), _request("fp16", workspace_mib=512))
    assert agx.workspace_bytes == 512 << 20 and agx.compute_capability == "8.7"
    x86 = plan_build(get_profile("x86-dgpu"), "10.13.3", _artifacts(), _request("fp16", compute_capability="9.0"))
    assert x86.compute_capability == "9.0" and x86.workspace_bytes == 2 << 30


@pytest.mark.parametrize("text,expected", [("8", BatchProfile(8, 8, 8)), ("1:8:16", BatchProfile(1, 8, 16))])
def test_batch_profile_parse(text: str, expected: BatchProfile) -> None:
    assert BatchProfile.parse(text) == expected and str(expected).count(":") == 2


@pytest.mark.parametrize("text", ["0", "8:4:16", "1:8", "a:b:c"])
def test_batch_profile_refuses(text: str) -> None:
    with pytest.raises(InputError, match="batch"):
        BatchProfile.parse(text)
