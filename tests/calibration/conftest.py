"""Session fixtures of the calibration tests: one statistics pass and one full calibration of
the digits ResNet50, shared by every test (2 shared CPU cores: calibrate once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CALIB_IMAGES = 200


@pytest.fixture(scope="session")
def digits_spec(digits_onnx: Path) -> Any:
    import onnx

    from edge_resnet.core import ModelSpec

    model = onnx.load(str(digits_onnx), load_external_data=False)
    return ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})


@pytest.fixture(scope="session")
def calibrated(digits_onnx: Path, digits_dirs: Any, tmp_path_factory: pytest.TempPathFactory
               ) -> Any:
    """All four methods + FP16 + top-1 on digits/test, calibrated on 200 digits/train images."""
    from edge_resnet.calibration import CalibrationOptions, calibrate
    from edge_resnet.calibration.options import (AccuracyOptions, CacheOptions, Fp16Options,
                                                 ReaderOptions)

    out = tmp_path_factory.mktemp("calibrated")
    options = CalibrationOptions(
        methods=("all",), reader=ReaderOptions(num_images=CALIB_IMAGES, seed=0, batch_size=32),
        fp16=Fp16Options(), cache=CacheOptions(trt_version="8.6.1"),
        accuracy=AccuracyOptions(digits_dirs.test_dir), progress=False)
    return calibrate(digits_onnx, digits_dirs.train_dir, out, options)


@pytest.fixture(scope="session")
def calib_stats(calibrated: Any) -> Any:
    from edge_resnet.calibration.stats import ActivationStats

    return ActivationStats.load(calibrated.stats_path)
