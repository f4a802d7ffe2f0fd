"""The Backend protocol and the registry the pipeline, evaluator and benchmark choose from.

Every backend (ONNX Runtime, OpenVINO, PyTorch, TensorRT) is created from a model file and its
typed options (:mod:`edge_resnet.backends.options`) and then follows one lifecycle, the shape
of Polygraphy's runners:

- :meth:`~Backend.activate` / :meth:`~Backend.deactivate`: make / free what is bound to the
  calling thread (a CUDA context's stream and buffers). The pipeline calls them in its
  inference thread; a single-threaded caller may skip them (``infer`` activates on first use).
- :meth:`~Backend.input_buffer`: the memory a batch of ``n`` images is preprocessed into
  (pinned host memory on GPU backends), reused from call to call.
- :meth:`~Backend.submit` / :meth:`~Backend.wait`: up to two batches in flight. GPU backends
  return at once; CPU backends run the batch inside ``submit`` and hand back a finished handle.
- :meth:`~Backend.infer`: one batch, synchronously.

Batches are checked against the model's input (dtype, layout, and the batch size against the
min/opt/max optimization profile) before any runtime sees them. Device side: Python 3.8, no
torch.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union

import numpy as np

from edge_resnet.backends.options import BackendOptions, OptionsLike, typed_options
from edge_resnet.core import BackendError, InputError, ModelSpec

try:  # Protocol is typing-only on 3.8+, kept importable for older type checkers.
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore

__all__ = ["Backend", "BackendBase", "BatchProfile", "Handle", "InferenceOutput",
           "backend_names", "load_backend", "register_backend"]

MAX_IN_FLIGHT = 2


@dataclass
class InferenceOutput:
    """What one batch inference returns: logits (N x classes), optional features (N x 2048)."""

    logits: np.ndarray
    features: Optional[np.ndarray] = None


@dataclass
class BackendInfo:
    """Metadata a backend reports: used in reports, bench tables and bundle manifests."""

    name: str
    model_path: str
    precision: str
    device: str
    details: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes a model input takes: TensorRT's optimization profile (min/opt/max), or
    a fixed batch dimension of an ONNX graph (min == opt == max)."""

    min: int
    opt: int
    max: int
    name: str = "profile 0"

    def __contains__(self, n: object) -> bool:
        return isinstance(n, int) and self.min <= n <= self.max


class Handle:
    """A submitted batch. Pass it to the backend's ``wait`` once; ``done`` says whether that
    will return without blocking (always true for CPU backends)."""

    __slots__ = ("owner", "n", "ticket", "output", "waited")

    def __init__(self, owner: object, n: int, ticket: Any = None,
                 output: Optional[InferenceOutput] = None) -> None:
        self.owner, self.n, self.ticket, self.output = owner, n, ticket, output
        self.waited = False

    @property
    def done(self) -> bool:
        if self.output is not None:
            return True
        query = getattr(self.ticket, "query", None)
        return bool(query()) if query is not None else False


class Backend(Protocol):
    """A loaded model ready to infer. Use as a context manager or call :meth:`close`."""

    spec: ModelSpec
    info: BackendInfo

    @property
    def active(self) -> bool:
        """True between :meth:`activate` and :meth:`deactivate`."""
        ...

    @property
    def batch_profile(self) -> Optional[BatchProfile]:
        """The batch sizes the model takes (None: any)."""
        ...

    def activate(self) -> None:
        """Make the thread-bound resources (CUDA stream, buffers) in the calling thread."""
        ...

    def deactivate(self) -> None:
        """Free what :meth:`activate` made (idempotent)."""
        ...

    def input_buffer(self, n: int, slot: int = 0) -> np.ndarray:
        """Reusable memory in the model's input shape/dtype for ``n`` images."""
        ...

    def infer(self, batch: np.ndarray) -> InferenceOutput:
        """Run one batch (as ``preprocess_batch`` made it) and return its outputs."""
        ...

    def submit(self, batch: "Union[np.ndarray, int]", slot: int = 0) -> Handle:
        """Start one batch (or the first ``n`` rows of ``input_buffer(n, slot)``)."""
        ...

    def wait(self, handle: Handle) -> InferenceOutput:
        """The outputs of a submitted batch, once it is done."""
        ...

    def close(self) -> None:
        """Release the session/engine; further ``infer`` calls raise."""
        ...

    def __enter__(self) -> "Backend":
        ...

    def __exit__(self, *exc: object) -> None:
        ...


_Self = TypeVar("_Self", bound="BackendBase")


class BackendBase:
    """Lifecycle, buffers, submit/wait and input checks shared by the concrete backends.

    Subclasses set ``spec``, ``info``, ``_input_dtype`` (numpy scalar type), ``_input_shape``
    (ints for fixed dimensions, anything else for dynamic ones), ``_input_label`` and, when
    the batch size is bounded, ``_batch_profile``; they implement ``_run`` (one checked batch)
    and ``_release``, and GPU backends ``_activate``/``_deactivate``, ``_new_host_buffer``
    and ``_submit``/``_wait``.
    """

    spec: ModelSpec
    info: BackendInfo
    _input_dtype: Any = np.float32
    _input_shape: Sequence[Any] = ()
    _input_label: str = "input"
    _batch_profile: Optional[BatchProfile] = None
    _profile_owner: str = "model's"
    _closed: bool = False
    _active_thread: Optional[int] = None

    @property
    def input_dtype(self) -> "np.dtype[Any]":
        return np.dtype(self._input_dtype)

    @property
    def batch_profile(self) -> Optional[BatchProfile]:
        """The batch sizes this model takes (None: any)."""
        return self._batch_profile

    # lifecycle ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active_thread is not None

    def activate(self) -> None:
        """Make the thread-bound resources in the calling thread; a no-op when active."""
        self._check_open()
        if self._active_thread is None:
            self._activate()
            self._active_thread = threading.get_ident()

    def deactivate(self) -> None:
        """Free what :meth:`activate` made (batches in flight are waited for first)."""
        if self._active_thread is None:
            return
        for handle in list(self._handles()):
            self.wait(handle)
        self._active_thread = None
        self._deactivate()

    def _activate(self) -> None:
        """Thread-bound set-up (GPU backends): nothing for CPU runtimes."""

    def _deactivate(self) -> None:
        """Undo :meth:`_activate`."""

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("backend is closed")

    # buffers -----------------------------------------------------------------------------
    def input_buffer(self, n: int, slot: int = 0) -> np.ndarray:
        """An array of the model input's shape and dtype for ``n`` images to preprocess into
        (``edge_resnet.preprocessing.preprocess_batch(..., out=buffer)``) and then
        :meth:`submit`. Each ``slot`` is one buffer, reused across calls (grown when ``n``
        exceeds what it holds), so a caller with several batches on their way uses one slot
        per batch."""
        self._check_open()
        self.check_batch_size(n)
        if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
            raise InputError(f"input_buffer slot must be an int >= 0, got {slot!r}")
        buffers: Dict[int, np.ndarray] = self.__dict__.setdefault("_host_buffers", {})
        buf = buffers.get(slot)
        if buf is None or buf.shape[0] < n:
            buf = buffers[slot] = self._new_host_buffer(self._buffer_shape(n), self.input_dtype)
        return buf[:n]

    def _buffer_shape(self, n: int) -> List[int]:
        spec_shape = self.spec.input_shape(n)
        dims = list(self._input_shape) or list(spec_shape)
        return [n] + [d if isinstance(d, int) and d > 0 else s
                      for d, s in zip(dims[1:], spec_shape[1:])]

    def _new_host_buffer(self, shape: Sequence[int], dtype: "np.dtype[Any]") -> np.ndarray:
        """Host memory for input batches: plain numpy here, pinned on GPU backends."""
        return np.empty(tuple(shape), dtype=dtype)

    # checks ------------------------------------------------------------------------------
    def check_batch_size(self, n: int) -> None:
        """Refuse a batch size outside the input's optimization profile, naming it."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"batch size must be an int >= 1, got {n!r}")
        self._check_size(n)

    def _check_size(self, n: int) -> None:
        prof = self._batch_profile
        if prof is None or prof.min <= n <= prof.max:
            return
        if prof.min == prof.max:
            raise InputError(f"batch of {n} does not fit the model input {self._input_label!r}:"
                             f" the model has a fixed batch size: use batch size {prof.min}")
        raise InputError(
            f"batch of {n} is outside the {self._profile_owner} profile {prof.min}..{prof.max} "
            f"({prof.name}, opt {prof.opt}) of input {self._input_label!r}; send batches of "
            f"{prof.min} to {prof.max} images (e.g. max_batch={prof.max}) or rebuild with "
            f"`edge-resnet build --engine-batch MIN:OPT:MAX` covering {n}")

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Refuse batches that would run but mean something else (raw pixels into a float graph,
        a wrong layout, a batch size outside the profile); cast float32 to a float16 input."""
        self._check_open()
        if batch.ndim != 4:
            raise InputError(f"expected a 4-D batch, got shape {batch.shape}")
        if batch.dtype != self._input_dtype:
            if self._input_dtype == np.uint8:
                raise InputError(
                    "this model has preprocessing fused in-graph and takes uint8 NHWC frames; "
                    f"got {batch.dtype}")
            if not np.issubdtype(batch.dtype, np.floating):
                raise InputError(
                    f"this model takes normalised float {self.spec.layout} input; got "
                    f"{batch.dtype} (use edge_resnet.preprocessing.preprocess_batch)")
            batch = batch.astype(self._input_dtype)
        expected = list(self._input_shape)
        wrong = [i for i, (d, n) in enumerate(zip(expected, batch.shape))
                 if i > 0 and isinstance(d, int) and d > 0 and d != n]
        if wrong:
            raise InputError(f"batch shape {tuple(batch.shape)} does not fit the model input "
                             f"{self._input_label!r} of shape {expected}")
        self._check_size(int(batch.shape[0]))
        return np.ascontiguousarray(batch)

    # inference ---------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> InferenceOutput:
        """One batch, synchronously (activates the backend in this thread if it is not)."""
        if self._active_thread is None:
            self.activate()
        return self._run(self.check_batch(batch))

    def _run(self, batch: np.ndarray) -> InferenceOutput:
        """Infer one checked batch (subclasses)."""
        raise NotImplementedError

    def submit(self, batch: "Union[np.ndarray, int]", slot: int = 0) -> Handle:
        """Start a batch: an array, or an int ``n`` for the first ``n`` rows of
        ``input_buffer(n, slot)``. At most two batches are in flight; :meth:`wait` for one
        before a third."""
        self._check_open()
        if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
            held = self.__dict__.get("_host_buffers", {}).get(slot)
            if held is None or held.shape[0] < int(batch):
                raise InputError(f"submit({int(batch)}) sends input_buffer({int(batch)}, "
                                 f"slot={slot}); fill that buffer first")
            array: np.ndarray = held[:int(batch)]
        elif isinstance(batch, np.ndarray):
            array = batch
        else:
            raise InputError(f"submit takes a numpy batch or a batch size, got "
                             f"{type(batch).__name__}")
        if len(self._handles()) >= MAX_IN_FLIGHT:
            raise BackendError(f"{MAX_IN_FLIGHT} batches are already in flight; wait() for "
                               "one before submitting another")
        self.activate()
        handle = self._submit(self.check_batch(array))
        self._handles().append(handle)
        return handle

    def _submit(self, batch: np.ndarray) -> Handle:
        """Start a checked batch; CPU runtimes run it here and return a finished handle."""
        return Handle(self, len(batch), output=self._run(batch))

    def wait(self, handle: Handle) -> InferenceOutput:
        """The outputs of ``handle``'s batch (blocking until the device is done with it)."""
        if handle.owner is not self:
            raise InputError("wait() got a handle of another backend")
        if handle.waited:
            raise InputError("wait() was already called for this handle")
        try:
            output = handle.output if handle.output is not None else self._wait(handle)
        finally:
            handle.waited = True
            pending = self._handles()
            if handle in pending:
                pending.remove(handle)
        return output

    def _wait(self, handle: Handle) -> InferenceOutput:
        raise BackendError(f"{type(self).__name__} gave a handle it cannot wait for")

    def _handles(self) -> List[Handle]:
        pending: List[Handle] = self.__dict__.setdefault("_pending", [])
        return pending

    # release -----------------------------------------------------------------------------
    def _release(self) -> None:
        """Free the session/engine (subclasses)."""

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._active_thread is not None:
                self.deactivate()
        finally:
            self._closed = True
            self.__dict__.pop("_host_buffers", None)
            self._release()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BackendFactory = Callable[..., Backend]

# name -> "module:class"; modules import lazily so that a missing optional runtime only
# matters when that backend is asked for.
_REGISTRY: Dict[str, str] = {
    "onnxruntime": "edge_resnet.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edge_resnet.backends.openvino:OpenVinoBackend",
    "pytorch": "edge_resnet.backends.pytorch:PyTorchBackend",
    "tensorrt": "edge_resnet.backends.tensorrt:TensorRTBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register ``"module:class"`` under ``name`` (timm-style registry). The class is called
    as ``cls(model_path, options, spec=spec)``."""
    _REGISTRY[name] = target


def backend_names() -> list:
    return sorted(_REGISTRY)


def load_backend(name: str, model_path: "str | Path", options: OptionsLike = None, *,
                 spec: Optional[ModelSpec] = None, **settings: Any) -> Backend:
    """Create backend ``name`` for ``model_path`` with its typed ``options``
    (``OnnxRuntimeOptions(threads=2)``; None: defaults). Unknown names and options of another
    backend are an :class:`InputError`.

    ``settings`` are the same fields as keywords (``threads=2``), for scripts: they build the
    typed options and cannot be mixed with ``options``. ``auto`` picks the backend from the
    file and this machine (:func:`edge_resnet.backends.reference.choose_backend`) and records
    why in ``info.details["backend_choice"]``; ``spec`` overrides the model's own metadata."""
    if settings and options is not None:
        raise InputError("give load_backend either typed options or keyword settings, "
                         f"not both (got {sorted(settings)})")
    if name == "auto":
        from edge_resnet.backends.reference import ModelRef, open_model

        return open_model(ModelRef(str(model_path), "auto", settings or options), spec=spec)
    target = _REGISTRY.get(name)
    if target is None:
        raise InputError(f"unknown backend {name!r}; choose one of: "
                         f"{', '.join(['auto'] + backend_names())}")
    typed: BackendOptions = typed_options(name, settings or options)
    module_name, _, attr = target.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module_name), attr)
    backend = factory(model_path, typed, spec=spec)
    backend.info.details.setdefault("backend_choice", f"asked for ({name})")
    return backend
