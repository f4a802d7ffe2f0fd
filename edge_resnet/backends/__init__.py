"""Inference backends behind one protocol (see :mod:`edge_resnet.backends.base`), created with
typed per-backend options (:mod:`edge_resnet.backends.options`)."""

from edge_resnet.backends.base import (Backend, BackendInfo, BatchProfile, Handle, InferenceOutput,
                                       backend_names, load_backend)
from edge_resnet.backends.options import (BackendOptions, OnnxRuntimeOptions, OpenVinoOptions,
                                          PyTorchOptions, TensorRTOptions)

__all__ = ["Backend", "BackendInfo", "BackendOptions", "BatchProfile", "Handle",
           "InferenceOutput", "OnnxRuntimeOptions", "OpenVinoOptions", "PyTorchOptions",
           "TensorRTOptions", "backend_names", "load_backend"]
