"""Calibration: one statistics pass → INT8 (TensorRT QDQ ONNX + calibration cache), FP16,
accuracy-aware mixed precision. Host side; heavy imports stay inside the modules."""

from edge_resnet.calibration.api import CalibrationOptions, CalibrationResult, calibrate
from edge_resnet.calibration.checker import Violation, check_qdq, check_qdq_file
from edge_resnet.calibration.methods import Method, MethodOptions, compute_ranges, method_names

__all__ = ["CalibrationOptions", "CalibrationResult", "Method", "MethodOptions", "Violation",
           "calibrate", "check_qdq", "check_qdq_file", "compute_ranges", "method_names"]
