"""TensorRT backend: runs an engine built by ``edge-resnet build`` (named-tensor API, 8.5+).

Before TensorRT sees the engine, its sidecar (``<engine>.json``) is checked against this
machine's TensorRT version and GPU compute capability, because TensorRT's own error for a
foreign engine is opaque. The engine is deserialized when the backend is created (on the DLA
core it was built for); :meth:`~TensorRTBackend.activate` makes what is bound to the calling
thread's CUDA context: the execution context (on ``TensorRTOptions.profile``), one stream and
device buffers for the profile's largest batch. Memory comes from :mod:`edge_resnet.cuda`
(cuda-python, as NVIDIA's TensorRT 10 samples do it): ``input_buffer`` slots are pinned host
memory, so the copy in is asynchronous; each batch sets its input shape (``set_input_shape``),
copies in, runs ``execute_async_v3`` and copies out into its own pinned output slot, all on the
one stream, and ``submit`` returns once that is enqueued. Two batches in flight share the device
buffers safely because the stream runs them in order; what overlaps is the host's work on batch
n+1 with the GPU's on batch n. Device side: Python 3.8, no torch; TensorRT imported when the
backend is created.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.backends.base import (MAX_IN_FLIGHT, BackendBase, BackendInfo, BatchProfile,
                                       Handle, InferenceOutput)
from edge_resnet.backends.options import TensorRTOptions, merge_settings
from edge_resnet.core import BackendError, InputError, ModelError, ModelSpec
from edge_resnet.engine import trt_api
from edge_resnet.engine.cache import check_compatible, read_sidecar

if TYPE_CHECKING:
    import tensorrt as trt

    from edge_resnet.cuda import DeviceBuffer, Event, PinnedBuffer, Stream

__all__ = ["TensorRTBackend"]

# output slots: one per batch in flight, one for a synchronous ``infer`` besides them
_SLOTS = MAX_IN_FLIGHT + 1


class _Ticket:
    """A batch enqueued on the stream: its output slot and the event recorded after its copy
    back."""

    def __init__(self, slot: int, n: int, event: "Event") -> None:
        self.slot, self.n, self.event = slot, n, event

    def query(self) -> bool:
        return self.event.query()


class _Active:
    """What :meth:`TensorRTBackend.activate` makes in the calling thread's CUDA context."""

    def __init__(self, context: "trt.IExecutionContext", stream: "Stream") -> None:
        self.context, self.stream = context, stream
        self.device: Dict[str, "DeviceBuffer"] = {}       # one per I/O tensor, largest batch
        self.host_out: List[Dict[str, "PinnedBuffer"]] = []   # per output slot
        self.staging: List["PinnedBuffer"] = []          # per slot, for pageable batches
        self.events: List["Event"] = []
        self.busy: List[bool] = [False] * _SLOTS
        self.shape_n = 0
        self.thread = threading.get_ident()

    def close(self) -> None:
        self.stream.synchronize()
        for buf in list(self.device.values()) + self.staging + [
                b for slot in self.host_out for b in slot.values()]:
            buf.close()
        for event in self.events:
            event.close()
        self.stream.close()


class TensorRTBackend(BackendBase):
    """A deserialized TensorRT engine ready to infer batches of its profile's sizes."""

    _profile_owner = "engine's"

    def __init__(self, model_path: "str | Path", options: Optional[TensorRTOptions] = None,
                 spec: Optional[ModelSpec] = None, **settings: Any) -> None:
        self.options = opts = merge_settings(TensorRTOptions, options, settings)
        trt_api.import_tensorrt()
        import tensorrt as trt

        from edge_resnet.cuda import get_device

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"engine {path} does not exist")
        self._device = get_device(opts.device)
        record = read_sidecar(path)
        installed = str(trt_api.installed_version(trt))
        major, minor = self._device.compute_capability
        check_compatible(record, installed, f"{major}.{minor}")
        key = record["key"]
        built_dla = key.get("dla_core")
        if opts.dla_core is not None and opts.dla_core != built_dla:
            where = "the GPU" if built_dla is None else f"DLA core {built_dla}"
            raise InputError(f"TensorRTOptions.dla_core={opts.dla_core}, but {path} was built "
                             f"for {where}; leave dla_core unset or build for that core "
                             "(edge-resnet build --dla N)")
        self.spec = spec if spec is not None else _spec_from_record(record, path)
        self._logger = trt_api.CapturingLogger()
        self._runtime = trt.Runtime(self._logger.impl)
        if built_dla is not None:
            self._runtime.DLA_core = int(built_dla)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelError(f"TensorRT {installed} cannot deserialize {path}: "
                             + " | ".join(self._logger.lines[-3:]))
        self._inspect(trt, opts.profile)
        self._active: Optional[_Active] = None
        self._pinned: List["PinnedBuffer"] = []
        self.info = BackendInfo(
            name="tensorrt", model_path=str(path), precision=str(key["precision"]),
            device=f"{self._device.name} ({'GPU' if built_dla is None else f'DLA{built_dla}'})",
            details={"tensorrt": installed, "engine_device": key["device"],
                     "batch_range": [self._profile.min, self._profile.max],
                     "batch_profile": [self._profile.min, self._profile.opt, self._profile.max],
                     "optimization_profile": opts.profile,
                     "threads": "n/a (GPU)" if opts.threads == 0 else
                     f"{opts.threads} ignored (GPU)"})

    @property
    def _profile(self) -> BatchProfile:
        prof = self._batch_profile
        if prof is None:  # _inspect always sets it
            raise BackendError("TensorRT backend has no batch profile")
        return prof

    def _inspect(self, trt: Any, profile: int) -> None:
        """Input/output names, dtype, shape and the batch sizes of optimization ``profile``."""
        engine = self._engine
        count = engine.num_optimization_profiles
        if profile >= count:
            raise InputError(f"TensorRTOptions.profile={profile}, but the engine has {count} "
                             f"optimization profile(s): use 0..{count - 1}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError(f"engine has inputs {inputs}; edge-resnet engines have one")
        self._input_name, self._output_names = inputs[0], [n for n in names if n not in inputs]
        shape = _dims(engine.get_tensor_shape(self._input_name))
        self._sample_shape = shape[1:]
        if shape[0] == -1:
            low, opt, high = engine.get_tensor_profile_shape(self._input_name, profile)
            self._batch_profile = BatchProfile(_dims(low)[0], _dims(opt)[0], _dims(high)[0],
                                               f"optimization profile {profile}")
        else:
            self._batch_profile = BatchProfile(shape[0], shape[0], shape[0],
                                               "fixed batch dimension")
        self._input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input_name))).type
        self._input_shape = [-1 if shape[0] == -1 else shape[0], *self._sample_shape]
        self._input_label = self._input_name

    # lifecycle ---------------------------------------------------------------------------
    def _activate(self) -> None:
        """Execution context, stream and buffers, in this thread's (now current) CUDA context."""
        import tensorrt as trt

        from edge_resnet.cuda import DeviceBuffer, Event, PinnedBuffer, Stream

        self._device.make_current()
        context = self._engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create an execution context (GPU memory?): "
                               + " | ".join(self._logger.lines[-3:]))
        active = _Active(context, Stream(self._device))
        try:
            if self.options.profile and not context.set_optimization_profile_async(
                    self.options.profile, active.stream.handle):
                raise BackendError(f"TensorRT refused optimization profile {self.options.profile}")
            largest = self._profile.max
            if not context.set_input_shape(self._input_name,
                                           trt.Dims([largest] + self._sample_shape)):
                raise BackendError(f"TensorRT refused input shape {[largest] + self._sample_shape}")
            active.shape_n = largest
            for name in [self._input_name] + self._output_names:
                dtype = trt.nptype(self._engine.get_tensor_dtype(name))
                buf = DeviceBuffer(tuple(_dims(context.get_tensor_shape(name))), dtype,
                                   device=self._device)
                active.device[name] = buf
                if not context.set_tensor_address(name, buf.ptr):
                    raise BackendError(f"TensorRT refused the address of tensor {name!r}")
            for _ in range(_SLOTS):
                active.host_out.append({
                    name: PinnedBuffer(active.device[name].shape, active.device[name].dtype,
                                       device=self._device) for name in self._output_names})
                dev_in = active.device[self._input_name]
                active.staging.append(PinnedBuffer(dev_in.shape, dev_in.dtype,
                                                   device=self._device))
                active.events.append(Event(device=self._device))
        except BaseException:
            active.close()
            raise
        self._active = active

    def _deactivate(self) -> None:
        active, self._active = self._active, None
        if active is not None:
            active.close()

    def _new_host_buffer(self, shape: Sequence[int], dtype: "np.dtype[Any]") -> np.ndarray:
        """Pinned, so the copy to the GPU is asynchronous."""
        from edge_resnet.cuda import PinnedBuffer

        buf = PinnedBuffer(tuple(shape), dtype, device=self._device)
        self._pinned.append(buf)
        return buf.array

    # inference ---------------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> InferenceOutput:
        return self._wait(self._submit(batch))

    def _submit(self, batch: np.ndarray) -> Handle:
        import tensorrt as trt

        active = self._active
        if active is None:
            raise BackendError("TensorRT backend is not active; call activate() first")
        if threading.get_ident() != active.thread:  # CUDA contexts are current per thread
            self._device.make_current()
            active.thread = threading.get_ident()
        slot = active.busy.index(False)  # base allows 2 in flight; there are 3 slots
        n = int(batch.shape[0])
        if n != active.shape_n:
            if not active.context.set_input_shape(self._input_name,
                                                  trt.Dims([n] + self._sample_shape)):
                raise InputError(f"TensorRT refused input shape {list(batch.shape)}")
            active.shape_n = n
        self._copy_in(active, slot, batch)
        if not active.context.execute_async_v3(active.stream.handle):
            raise BackendError("TensorRT execute_async_v3 failed: "
                               + " | ".join(self._logger.lines[-3:]))
        for name in self._output_names:
            out = active.host_out[slot][name]
            nbytes = int(np.prod(_dims(active.context.get_tensor_shape(name)))) * \
                out.dtype.itemsize
            out.download_from(active.device[name], active.stream, nbytes)
        active.events[slot].record(active.stream)
        active.busy[slot] = True
        return Handle(self, n, ticket=_Ticket(slot, n, active.events[slot]))

    def _copy_in(self, active: _Active, slot: int, batch: np.ndarray) -> None:
        """Async copy from an ``input_buffer`` (pinned); other memory goes through the slot's
        pinned staging buffer first (a plain numpy batch may be freed once submit returns)."""
        from edge_resnet.cuda import copy_async

        device_in = active.device[self._input_name]
        if any(np.may_share_memory(batch, buf.array) for buf in self._pinned):
            copy_async(device_in.ptr, batch.ctypes.data, batch.nbytes, active.stream, "h2d")
            return
        staging = active.staging[slot]
        np.copyto(staging.array[:len(batch)], batch)
        staging.upload_to(device_in, active.stream, batch.nbytes)

    def _wait(self, handle: Handle) -> InferenceOutput:
        ticket: _Ticket = handle.ticket
        active = self._active
        if active is None:
            raise BackendError("TensorRT backend was deactivated with a batch in flight")
        try:
            ticket.event.synchronize()
        finally:
            active.busy[ticket.slot] = False
        outs = {name: buf.array[:ticket.n].astype(np.float32)
                for name, buf in active.host_out[ticket.slot].items()}
        if self.spec.output_name not in outs:
            raise ModelError(f"engine outputs {sorted(outs)} lack {self.spec.output_name!r}")
        return InferenceOutput(logits=outs[self.spec.output_name],
                               features=outs.get(self.spec.features_name or ""))

    def _release(self) -> None:
        for buf in getattr(self, "_pinned", []):
            buf.close()
        self._pinned = []
        self._engine = None  # type: ignore[assignment]
        self._runtime = None  # type: ignore[assignment]


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
