"""TensorRT backend: runs an engine built by ``edge-resnet build`` (named-tensor API, 8.5+).

Before TensorRT sees the engine, its sidecar (``<engine>.json``) is checked against this
machine's TensorRT version and GPU compute capability, because TensorRT's own error for a
foreign engine is opaque. Memory comes from :mod:`edge_resnet.cuda` (cuda-python, as NVIDIA's
TensorRT 10 samples do it): pinned host + device buffers sized for the optimization profile's
largest batch, allocated once, and one stream; each ``infer`` sets the input shape
(``set_input_shape``), copies in, runs ``execute_async_v3``, copies out, synchronizes.
Device side: Python 3.8, no torch; TensorRT imported when the backend is created.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from edge_resnet.backends.base import BackendBase, BackendInfo, InferenceOutput
from edge_resnet.core import BackendError, InputError, ModelError, ModelSpec
from edge_resnet.engine import trt_api
from edge_resnet.engine.cache import check_compatible, read_sidecar

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["TensorRTBackend"]


class _Binding:
    """One I/O tensor: name, dtype and pinned/device buffers for the largest batch."""

    def __init__(self, name: str, dtype: Any, shape: Tuple[int, ...], device: Any) -> None:
        from edge_resnet.cuda import DeviceBuffer, PinnedBuffer

        self.name, self.dtype, self.shape = name, np.dtype(dtype), shape
        self.host = PinnedBuffer(shape, dtype, device=device)
        self.device = DeviceBuffer(shape, dtype, device=device)

    def close(self) -> None:
        self.host.close()
        self.device.close()


class TensorRTBackend(BackendBase):
    """A deserialized TensorRT engine ready to infer batches of the profile's sizes."""

    def __init__(self, model_path: "str | Path", spec: Optional[ModelSpec] = None,
                 device_index: int = 0, threads: int = 0, **unused: Any) -> None:
        # ``threads`` is accepted because the pipeline passes it to every backend; TensorRT
        # runs on the GPU/DLA and has no CPU thread setting, which info.details records.
        if unused:
            raise InputError(f"tensorrt backend got unknown options: {sorted(unused)}")
        trt_api.import_tensorrt()
        import tensorrt as trt

        from edge_resnet.cuda import Stream, get_device

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"engine {path} does not exist")
        self._device = get_device(device_index)
        record = read_sidecar(path)
        installed = str(trt_api.installed_version(trt))
        major, minor = self._device.compute_capability
        check_compatible(record, installed, f"{major}.{minor}")
        self.spec = spec if spec is not None else _spec_from_record(record, path)
        self._logger = trt_api.CapturingLogger()
        self._runtime = trt.Runtime(self._logger.impl)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelError(f"TensorRT {installed} cannot deserialize {path}: "
                             + " | ".join(self._logger.lines[-3:]))
        self._context = self._engine.create_execution_context()
        self._stream = Stream(self._device)
        self._thread = threading.get_ident()
        self._inputs, self._outputs, self._batch_range = self._allocate(trt)
        first = self._inputs[0]
        self._input_dtype = first.dtype.type
        self._input_shape = [-1 if self._batch_range[0] != self._batch_range[1] else
                             self._batch_range[0], *first.shape[1:]]
        self._input_label = first.name
        key = record["key"]
        self.info = BackendInfo(
            name="tensorrt", model_path=str(path), precision=str(key["precision"]),
            device=f"{self._device.name} ({'DLA' + str(key['dla_core']) if key['dla_core'] is not None else 'GPU'})",
            details={"tensorrt": installed, "batch_range": list(self._batch_range),
                     "engine_device": key["device"],
                     "threads": "n/a (GPU)" if threads == 0 else f"{threads} ignored (GPU)"})

    def _io_names(self) -> Tuple[List[str], List[str]]:
        import tensorrt as trt

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        return inputs, [n for n in names if n not in inputs]

    def _allocate(self, trt: Any) -> Tuple[List[_Binding], List[_Binding], Tuple[int, int]]:
        inputs, outputs = self._io_names()
        if len(inputs) != 1:
            raise ModelError(f"engine has inputs {inputs}; edge-resnet engines have one")
        name = inputs[0]
        shape = _dims(self._engine.get_tensor_shape(name))
        if shape[0] == -1:
            low, _, high = self._engine.get_tensor_profile_shape(name, 0)
            batch_range = (int(low[0]), int(high[0]))
        else:
            batch_range = (int(shape[0]), int(shape[0]))
        largest = batch_range[1]
        self._context.set_input_shape(name, trt.Dims([largest] + shape[1:]))
        bindings: Dict[str, _Binding] = {}
        for tensor in inputs + outputs:
            dims = _dims(self._context.get_tensor_shape(tensor))
            dtype = trt.nptype(self._engine.get_tensor_dtype(tensor))
            bindings[tensor] = _Binding(tensor, dtype, tuple(dims), self._device)
            if not self._context.set_tensor_address(tensor, bindings[tensor].device.ptr):
                raise BackendError(f"TensorRT refused the address of tensor {tensor!r}")
        return ([bindings[n] for n in inputs], [bindings[n] for n in outputs], batch_range)

    def infer(self, batch: np.ndarray) -> InferenceOutput:
        import tensorrt as trt

        batch = self.check_batch(batch)
        n = batch.shape[0]
        low, high = self._batch_range
        if not low <= n <= high:
            raise InputError(f"batch of {n} is outside the engine's profile {low}..{high}; "
                             "rebuild with --batch MIN:OPT:MAX covering it")
        if threading.get_ident() != self._thread:  # CUDA contexts are per thread
            self._device.make_current()
            self._thread = threading.get_ident()
        binding = self._inputs[0]
        if not self._context.set_input_shape(binding.name, trt.Dims(list(batch.shape))):
            raise InputError(f"TensorRT refused input shape {batch.shape}")
        np.copyto(binding.host.array[:n], batch)
        binding.host.upload_to(binding.device, self._stream, batch.nbytes)
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError("TensorRT execute_async_v3 failed: "
                               + " | ".join(self._logger.lines[-3:]))
        for out in self._outputs:
            nbytes = int(np.prod(_dims(self._context.get_tensor_shape(out.name)))) * out.dtype.itemsize
            out.host.download_from(out.device, self._stream, nbytes)
        self._stream.synchronize()
        by_name = {o.name: o.host.array[:n].astype(np.float32) for o in self._outputs}
        if self.spec.output_name not in by_name:
            raise ModelError(f"engine outputs {sorted(by_name)} lack {self.spec.output_name!r}")
        return InferenceOutput(logits=by_name[self.spec.output_name],
                               features=by_name.get(self.spec.features_name or ""))

    def _release(self) -> None:
        for binding in getattr(self, "_inputs", []) + getattr(self, "_outputs", []):
            binding.close()
        if getattr(self, "_stream", None) is not None:
            self._stream.close()
        self._context = None  # type: ignore[assignment]
        self._engine = None  # type: ignore[assignment]


def _dims(dims: "trt.Dims") -> List[int]:
    """A TensorRT ``Dims`` as ints (Dims indexes like a tuple; the stubs do not iterate it)."""
    return [int(dims[i]) for i in range(len(dims))]


def _spec_from_record(record: Dict[str, Any], path: Path) -> ModelSpec:
    if record.get("artifact") is not None:  # the provenance record (refused if too new)
        from edge_resnet.core import ArtifactInfo

        return ArtifactInfo.from_dict(record["artifact"]).spec
    metadata = record.get("spec")
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: the sidecar carries no model spec; pass spec=ModelSpec(...)")
    return ModelSpec.from_metadata(metadata)
