"""Hardware suite set-up: skip with the reason unless TensorRT and a CUDA GPU are here.

Run on a Jetson (or an x86 host with an NVIDIA GPU) with ``python -m pytest -m tensorrt``.
Engines are built from the digits fixture model per precision, into one session folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest

from edge_resnet.devices.detect import detect
from edge_resnet.devices.profiles import get_profile
from trt_helpers import TrtMachine


@pytest.fixture(scope="session")
def trt_machine() -> TrtMachine:
    from edge_resnet.cuda import cuda_available
    from edge_resnet.engine.trt_api import import_tensorrt, installed_version

    try:
        trt = import_tensorrt()
    except Exception as exc:
        pytest.skip(f"TensorRT is not usable here: {exc}")
    if not cuda_available():
        pytest.skip("no CUDA GPU (or no cuda-python): the tensorrt backend needs both")
    found = detect()
    if found.profile is None:
        pytest.skip(f"no device profile for this machine: {found.profile_reason}")
    major, minor = _device_capability()
    return TrtMachine(get_profile(found.profile), str(installed_version(trt)), f"{major}.{minor}")


def _device_capability() -> Any:
    from edge_resnet.cuda import get_device

    return get_device(0).compute_capability


@pytest.fixture(scope="session")
def calibrated(trt_machine: TrtMachine, digits_onnx: Path, digits_dirs: Any,
               tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """QDQ INT8, FP16 ONNX and a calibration cache for this TensorRT, from the calibration API."""
    from edge_resnet.calibration.api import calibrate

    out = tmp_path_factory.mktemp("calibrated")
    cache_version = trt_machine.trt_version if trt_machine.major < 11 else "10.3.0"
    result = calibrate(digits_onnx, digits_dirs.train_dir, out, methods=("entropy",), fp16=True,
                       trt_version=cache_version, num_images=256, progress=False)
    art = result.methods["entropy"]
    assert result.fp16_path is not None
    return {"qdq": art.qdq_path, "cache": art.cache_path, "fp16": Path(result.fp16_path)}


@pytest.fixture(scope="session")
def engines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the suite's engines go: $EDGE_RESNET_TRT_ENGINES (kept for benchmarks/tensorrt.py)
    or a session temporary folder."""
    kept = os.environ.get("EDGE_RESNET_TRT_ENGINES")
    return Path(kept) if kept else tmp_path_factory.mktemp("engines")
