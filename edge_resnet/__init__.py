"""edge-resnet: ResNet50 from PyTorch to NVIDIA Jetson fleets.

The package imports nothing heavy: torch, tensorrt and openvino load inside the modules that use
them, so device-side code (runtime, backends) runs on a Jetson without torch.
"""

from edge_resnet import core as _core
from edge_resnet.core import *  # noqa: F403  (the shared types and errors: core.__all__)

__version__ = "0.1.0"

# The library API the CLI is a thin layer over, loaded on first use (PEP 562) so that
# ``import edge_resnet`` stays light on a device without torch.
_LAZY = {
    "load_model": "edge_resnet.export.models",
    "save_checkpoint": "edge_resnet.export.models",
    "finetune": "edge_resnet.training.finetune",
    "export_onnx": "edge_resnet.export.onnx_export",
    "check_parity": "edge_resnet.export.parity",
    "export_verified": "edge_resnet.export.parity",
    "write_digits_folder": "edge_resnet.datasets.digits",
    "run_demo": "edge_resnet.demo",
    "evaluate": "edge_resnet.evaluation",
    "write_report": "edge_resnet.evaluation",
    "calibrate": "edge_resnet.calibration",
    "check_qdq": "edge_resnet.calibration",
    "load_backend": "edge_resnet.backends",
    "preprocess": "edge_resnet.preprocessing",
    "preprocess_batch": "edge_resnet.preprocessing",
    "ImageFolder": "edge_resnet.images",
    "read_image": "edge_resnet.images",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edge_resnet' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a host tool on a machine without its packages: say what to do
        from edge_resnet._deps import dependency_error

        error = dependency_error(exc)
        if error is None:
            raise
        raise error from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [*_core.__all__, "__version__", *_LAZY]
