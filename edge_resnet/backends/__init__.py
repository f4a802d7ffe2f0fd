"""Inference backends behind one protocol (see :mod:`edge_resnet.backends.base`)."""

from edge_resnet.backends.base import Backend, BackendInfo, InferenceOutput, backend_names, load_backend

__all__ = ["Backend", "BackendInfo", "InferenceOutput", "backend_names", "load_backend"]
