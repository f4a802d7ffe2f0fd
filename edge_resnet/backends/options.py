"""Typed per-backend options: what a model reference carries instead of a ``**options`` bag.

Each backend has one frozen dataclass of the settings it understands, checked when it is made
(an :class:`~edge_resnet.core.InputError` naming the field and the allowed values), so a typo
or a setting meant for another backend fails before any runtime is imported. Command lines
collect generic settings (``threads``, ``exact_qdq``, ``device``) before ``--backend auto`` has
decided which backend runs a file; :func:`typed_options` turns such a mapping into the chosen
backend's options. Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar, Union

from edge_resnet.core import InputError

__all__ = ["BACKEND_ONLY", "BackendOptions", "OnnxRuntimeOptions", "OpenVinoOptions", "OptionsLike",
           "PyTorchOptions", "TensorRTOptions", "merge_settings", "options_class", "typed_options"]

# Settings a command line may give for every backend of a run although only one backend reads
# them (ONNX Runtime's exact Q/DQ arithmetic): the others leave them out instead of refusing.
BACKEND_ONLY = {"exact_qdq": "onnxruntime"}


def _check_threads(owner: str, threads: Any) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InputError(f"{owner}.threads must be >= 0 (an int; 0 lets the runtime choose), "
                         f"got {threads!r}")


def _check_choice(owner: str, name: str, value: Any, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise InputError(f"{owner}.{name} must be {listed}, got {value!r}")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{owner}.{name} must be True or False, got {value!r}")


def _check_index(owner: str, name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{owner}.{name} must be an int >= 0"
                         f"{' or None' if optional else ''}, got {value!r}")


@dataclass(frozen=True)
class BackendOptions:
    """Settings every backend takes. ``threads``: CPU threads for inference (0 lets the
    runtime choose; GPU backends record it and do not use it)."""

    backend: ClassVar[str] = ""
    threads: int = 0

    def __post_init__(self) -> None:
        _check_threads(type(self).__name__, self.threads)


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    """ONNX Runtime: ``exact_qdq`` runs a Q/DQ graph as written (the arithmetic TensorRT's
    INT8 kernels reproduce) instead of ONNX Runtime's fused CPU INT8 kernels; ``providers``
    are execution providers in priority order (None: CPU only)."""

    backend: ClassVar[str] = "onnxruntime"
    exact_qdq: bool = False
    providers: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool("OnnxRuntimeOptions", "exact_qdq", self.exact_qdq)
        if self.providers is not None:
            providers = (self.providers,) if isinstance(self.providers, str) else \
                tuple(self.providers)
            if not providers or not all(isinstance(p, str) and p for p in providers):
                raise InputError("OnnxRuntimeOptions.providers must be provider names such as "
                                 f"'CPUExecutionProvider', got {self.providers!r}")
            object.__setattr__(self, "providers", providers)  # lists become hashable tuples


@dataclass(frozen=True)
class OpenVinoOptions(BackendOptions):
    """OpenVINO: ``device`` (CPU, GPU, NPU, AUTO...), performance ``hint`` and the precision
    its plugin may compute in (f32 keeps an FP32 model FP32 on bf16-capable CPUs)."""

    backend: ClassVar[str] = "openvino"
    device: str = "CPU"
    hint: str = "LATENCY"
    inference_precision: str = "f32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.device, str) or not self.device:
            raise InputError(f"OpenVinoOptions.device must name an OpenVINO device such as "
                             f"'CPU' or 'GPU', got {self.device!r}")
        _check_choice("OpenVinoOptions", "hint", self.hint, ("LATENCY", "THROUGHPUT"))
        _check_choice("OpenVinoOptions", "inference_precision", self.inference_precision,
                      ("f32", "bf16", "f16"))


@dataclass(frozen=True)
class TensorRTOptions(BackendOptions):
    """TensorRT: the CUDA ``device`` index, the DLA core the engine was built for (None: the
    one its sidecar records) and the optimization ``profile`` index the context uses."""

    backend: ClassVar[str] = "tensorrt"
    device: int = 0
    dla_core: Optional[int] = None
    profile: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_index("TensorRTOptions", "device", self.device)
        _check_index("TensorRTOptions", "dla_core", self.dla_core, optional=True)
        _check_index("TensorRTOptions", "profile", self.profile)


@dataclass(frozen=True)
class PyTorchOptions(BackendOptions):
    """PyTorch: ``device`` (auto, cpu, cuda, cuda:N), ``precision`` (fp16 on CUDA only),
    channels-last memory and CUDA graphs (one per batch size, at most ``max_graphs``) on CUDA;
    ``trust_pickle`` loads a checkpoint that is not a plain state dict."""

    backend: ClassVar[str] = "pytorch"
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    cuda_graphs: bool = True
    max_graphs: int = 8
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise InputError("PyTorchOptions.device must be auto, cpu or cuda (cuda:N for GPU "
                             f"N), got {self.device!r}")
        _check_choice("PyTorchOptions", "precision", self.precision, ("fp32", "fp16"))
        for name in ("channels_last", "cuda_graphs", "trust_pickle"):
            _check_bool("PyTorchOptions", name, getattr(self, name))
        if isinstance(self.max_graphs, bool) or not isinstance(self.max_graphs, int) \
                or self.max_graphs < 1:
            raise InputError(f"PyTorchOptions.max_graphs must be an int >= 1, got "
                             f"{self.max_graphs!r}")


_CLASSES: Dict[str, Type[BackendOptions]] = {
    cls.backend: cls for cls in (OnnxRuntimeOptions, OpenVinoOptions, TensorRTOptions,
                                 PyTorchOptions)}

_Options = TypeVar("_Options", bound=BackendOptions)

# What a model reference or ``load_backend`` accepts: the backend's options, generic settings
# from a command line (a mapping), or None for the defaults.
OptionsLike = Union[BackendOptions, Mapping[str, Any], None]


def options_class(backend: str) -> Type[BackendOptions]:
    """The options class of ``backend`` (:class:`BackendOptions` for a registered backend
    that declares none)."""
    return _CLASSES.get(backend, BackendOptions)


def typed_options(backend: str, options: OptionsLike) -> BackendOptions:
    """``options`` as ``backend``'s typed options.

    A typed object must be the backend's own class (``OpenVinoOptions`` for an ONNX Runtime
    model is refused, naming both); a mapping (settings from a command line) fills the
    backend's fields, leaving out settings that belong to another backend only
    (``exact_qdq``: ONNX Runtime) and refusing any other unknown key.
    """
    cls = options_class(backend)
    if options is None:
        return cls()
    if isinstance(options, BackendOptions):
        if type(options) is not cls:
            raise InputError(f"{type(options).__name__} are options of the "
                             f"{options.backend or 'generic'} backend, not {backend}; give "
                             f"{cls.__name__}(...) or name the {options.backend} backend")
        return options
    if not isinstance(options, Mapping):
        raise InputError(f"backend options must be {cls.__name__}, a mapping or None; got "
                         f"{type(options).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(k for k in options if k not in names and BACKEND_ONLY.get(k) is None)
    if unknown:
        raise InputError(f"{backend} backend got unknown options: {unknown}; "
                         f"{cls.__name__} has {sorted(names)}")
    return cls(**{k: v for k, v in options.items() if k in names})


def merge_settings(cls: Type[_Options], options: OptionsLike, settings: Mapping[str, Any]
                   ) -> _Options:
    """``cls`` options from either ``options`` or keyword ``settings`` (``threads=2``): the
    keyword form of a backend's constructor and of ``load_backend``. Both at once is refused."""
    if settings and options is not None:
        raise InputError(f"give the {cls.backend} backend either {cls.__name__} or keyword "
                         f"settings, not both (got {sorted(settings)})")
    typed = typed_options(cls.backend, settings or options)
    if not isinstance(typed, cls):  # a backend registered with another options class
        raise InputError(f"the {cls.backend} backend takes {cls.__name__}, got "
                         f"{type(typed).__name__}")
    return typed
