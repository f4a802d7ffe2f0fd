"""edge-resnet: ResNet50 from PyTorch to NVIDIA Jetson fleets.

The package imports nothing heavy: torch, tensorrt and openvino load inside the modules that use
them, so device-side code (runtime, backends) runs on a Jetson without torch.
"""

from edge_resnet.core import (
    BackendError,
    CalibrationError,
    DataError,
    DependencyError,
    EdgeResnetError,
    GateError,
    InputError,
    ModelError,
    ModelSpec,
    ParityError,
    SourceError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CalibrationError",
    "DataError",
    "DependencyError",
    "EdgeResnetError",
    "GateError",
    "InputError",
    "ModelError",
    "ModelSpec",
    "ParityError",
    "SourceError",
    "__version__",
]
