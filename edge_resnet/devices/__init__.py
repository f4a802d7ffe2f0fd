"""Device profiles, TensorRT version rules, detection and build plans (device side, no torch).

``get_profile(name)`` / ``all_profiles()`` read the shipped JSON profiles; ``trt_versions`` knows
what each TensorRT generation accepts; ``detect()`` says what this machine is;
``plan_build(...)`` decides what an engine build will do, without TensorRT. All standard library.
"""

from __future__ import annotations

from edge_resnet.devices.detect import Detection, detect
from edge_resnet.devices.plan import (BatchProfile, BuildArtifacts, BuildPlan, BuildRequest,
                                      OnnxArtifact, PlanError, plan_build)
from edge_resnet.devices.profiles import DeviceProfile, JetPackRelease, all_profiles, get_profile, profile_names
from edge_resnet.devices.trt_versions import TrtVersion, cache_version, max_onnx_opset, parse_version

__all__ = ["BatchProfile", "BuildArtifacts", "BuildPlan", "BuildRequest", "Detection",
           "DeviceProfile", "JetPackRelease", "OnnxArtifact", "PlanError", "TrtVersion",
           "all_profiles", "cache_version", "detect", "get_profile", "max_onnx_opset",
           "parse_version", "plan_build", "profile_names"]
