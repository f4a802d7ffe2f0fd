"""Which optional package provides what, and the one-line fix when one is missing.

Host tools (export, finetune, calibration, demo) import PyTorch and friends at module level; a
device without them must get one line saying what to install, not a ``ModuleNotFoundError``
traceback. The CLI and the lazy library API turn such an import failure into a
:class:`~edge_resnet.core.DependencyError` through :func:`dependency_error`. Device side:
standard library only.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from edge_resnet.core import DependencyError

__all__ = ["dependency_error"]

# top-level module -> (what it is, how to get it)
_PROVIDERS: Dict[str, Tuple[str, str]] = {
    "torch": ("PyTorch", "pip install 'edge-resnet[host]' on a workstation (on a Jetson: NVIDIA's "
                         "PyTorch wheel for your JetPack)"),
    "torchvision": ("torchvision", "pip install 'edge-resnet[host]'"),
    "onnxscript": ("onnxscript (ONNX export)", "pip install 'edge-resnet[host]'"),
    "sklearn": ("scikit-learn (the bundled digits)", "pip install 'edge-resnet[host]'"),
    "onnxconverter_common": ("onnxconverter-common (FP16)", "pip install 'edge-resnet[host]'"),
    "cv2": ("OpenCV", "pip install 'edge-resnet[video]' (Jetsons ship OpenCV with GStreamer)"),
    "openvino": ("OpenVINO", "pip install 'edge-resnet[openvino]'"),
    "matplotlib": ("matplotlib (plots)", "pip install matplotlib"),
}


def dependency_error(exc: ImportError) -> Optional[DependencyError]:
    """A :class:`DependencyError` naming the fix when ``exc`` is a known optional package
    missing; None for anything else (a real bug must keep its traceback)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    provider = _PROVIDERS.get(name)
    if provider is None:
        return None
    what, fix = provider
    return DependencyError(f"this needs {what}, which is not installed here ({name!r} cannot be "
                           f"imported): {fix}")
