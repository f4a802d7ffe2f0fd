"""Device profiles, TensorRT version rules, detection and build plans (device side, no torch).

``get_profile(name)`` / ``all_profiles()`` read the shipped JSON profiles; ``trt_versions`` knows
what each TensorRT generation accepts; ``detect()`` says what this machine is;
``plan_build(...)`` decides what an engine build will do, without TensorRT.
"""

from __future__ import annotations

from edge_resnet.devices.profiles import DeviceProfile, JetPackRelease, all_profiles, get_profile, profile_names
from edge_resnet.devices.trt_versions import TrtVersion, cache_version, parse_version

__all__ = ["DeviceProfile", "JetPackRelease", "TrtVersion", "all_profiles", "cache_version",
           "get_profile", "parse_version", "profile_names"]
