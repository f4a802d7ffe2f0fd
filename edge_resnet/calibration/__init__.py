"""Calibration: one statistics pass → INT8 (TensorRT QDQ ONNX + calibration cache), FP16,
accuracy-aware mixed precision. Host side; heavy imports stay inside the modules."""

from edge_resnet.calibration.api import CalibrationOptions, CalibrationResult, calibrate
from edge_resnet.calibration.checker import Violation, check_qdq, check_qdq_file
from edge_resnet.calibration.methods import Method, compute_ranges, method_names
from edge_resnet.calibration.options import (AccuracyOptions, CacheOptions, Fp16Options,
                                             MethodOptions, ReaderOptions)

__all__ = ["AccuracyOptions", "CacheOptions", "CalibrationOptions", "CalibrationResult",
           "Fp16Options", "Method", "MethodOptions", "ReaderOptions", "Violation",
           "calibrate", "check_qdq", "check_qdq_file", "compute_ranges", "method_names"]
