"""Model references (``backend:path``) and the ``auto`` backend choice.

A model reference names a file and the backend that runs it, so one command can compare a
TensorRT engine with the FP32 ONNX on ONNX Runtime (``eval --reference fp32.onnx --candidate
tensorrt:model.int8.engine``). :func:`parse_model_ref` is the one parser of that syntax; a plain
path keeps the command's ``--backend``.

:func:`choose_backend` is the pure rule behind ``--backend auto`` (the default of ``run``,
``eval`` and ``bench``): TensorRT for an engine, PyTorch for a checkpoint, and for an INT8 QDQ
ONNX on a CPU OpenVINO only when it is installed *and* the CPU has INT8 dot-product instructions
(VNNI/AMX). Without them OpenVINO's INT8 of the same file agreed with FP32 on 94.99 % of the
digits test images against 98.89 % on ONNX Runtime (issue 9), so ONNX Runtime is kept there.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

from edge_resnet.backends.options import BACKEND_ONLY, BackendOptions, OptionsLike, typed_options
from edge_resnet.core import InputError, ModelError, ModelSpec

if TYPE_CHECKING:
    from edge_resnet.backends.base import Backend

log = logging.getLogger(__name__)

__all__ = ["AUTO", "ENGINE_SUFFIXES", "CHECKPOINT_SUFFIXES", "X86_INT8_FLAGS", "ModelRef",
           "choose_backend", "installed_runtimes", "is_qdq_onnx", "open_model", "options_for",
           "parse_model_ref", "read_cpu_flags", "resolve_backend"]

AUTO = "auto"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# x86 INT8 dot-product instructions OpenVINO's CPU plugin uses for INT8 (/proc/cpuinfo names).
X86_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):(.+)$")


@dataclass(frozen=True)
class ModelRef:
    """A model file, the backend to run it with (``auto``: :func:`choose_backend` decides) and
    that backend's options: its typed options (``OnnxRuntimeOptions(threads=2)``), or generic
    settings from a command line (``{"threads": 2, "exact_qdq": True}``) that become the chosen
    backend's options when it is opened. Typed options of another backend are refused here."""

    path: str
    backend: str = AUTO
    options: OptionsLike = field(default_factory=dict)

    def __post_init__(self) -> None:
        opts = self.options
        if isinstance(opts, BackendOptions) and self.backend != AUTO \
                and opts.backend and opts.backend != self.backend:
            raise InputError(f"{self.backend}:{self.path}: {type(opts).__name__} are options of "
                             f"the {opts.backend} backend; give options of {self.backend}")
        if opts is not None and not isinstance(opts, (BackendOptions, Mapping)):
            raise InputError(f"ModelRef options must be a backend's options (e.g. "
                             f"OnnxRuntimeOptions) or a mapping, got {type(opts).__name__}")

    def __str__(self) -> str:
        return self.path if self.backend == AUTO else f"{self.backend}:{self.path}"


def _known_backends() -> Tuple[str, ...]:
    from edge_resnet.backends.base import backend_names

    return tuple(backend_names())


def parse_model_ref(text: "str | Path", default_backend: str = AUTO,
                    options: OptionsLike = None) -> ModelRef:
    """``tensorrt:model.engine`` -> ModelRef(model.engine, tensorrt); a plain path gets
    ``default_backend``. A prefix that is no backend name is refused, listing the known ones
    (a file whose name really contains ``name:`` is taken as a path when it exists)."""
    known = _known_backends()
    _check_backend(default_backend, known, "backend")
    opts: OptionsLike = options if isinstance(options, BackendOptions) else dict(options or {})
    if isinstance(text, Path):
        return ModelRef(str(text), default_backend, opts)
    match = _PREFIX.match(text)
    if match is None or (match.group(1) not in known and Path(text).exists()):
        return ModelRef(text, default_backend, opts)
    name, path = match.groups()
    _check_backend(name, known, f"model {text!r}")
    return ModelRef(path, name, opts)


def _check_backend(name: str, known: Tuple[str, ...], where: str) -> None:
    if name != AUTO and name not in known:
        raise InputError(f"{where}: unknown backend {name!r}; choose one of: "
                         f"{', '.join((AUTO,) + known)} (as BACKEND:PATH, e.g. "
                         "tensorrt:model.engine; write a path that has a colon as ./PATH)")


def options_for(backend: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """Generic ``options`` without the ones that belong to another backend (``exact_qdq``
    goes to ONNX Runtime models only); :func:`~edge_resnet.backends.options.typed_options`
    makes the typed options from them."""
    return {k: v for k, v in options.items() if BACKEND_ONLY.get(k, backend) == backend}


def read_cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """This CPU's INT8 instruction flags, read by the same code as ``edge-resnet doctor``."""
    from edge_resnet.devices.doctor import cpu_int8_features

    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(cpu_int8_features(text))


def installed_runtimes() -> FrozenSet[str]:
    """Optional runtimes importable here (found without importing them: no start-up cost)."""
    return frozenset(name for name in ("openvino",) if importlib.util.find_spec(name) is not None)


def is_qdq_onnx(path: "str | Path") -> bool:
    """True when the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as exc:
        raise InputError(f"model {path} does not exist") from exc
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def choose_backend(model_path: "str | Path", cpu_flags: Iterable[str] = (),
                   installed: Iterable[str] = (), exact_qdq: bool = False,
                   qdq: Optional[bool] = None) -> Tuple[str, str]:
    """(backend name, reason) for ``model_path``: the ``--backend auto`` rule.

    ``cpu_flags``: the CPU's flags (all of them or just the INT8 ones); ``installed``: optional
    runtimes present (``openvino``); ``exact_qdq``: the caller asked for ONNX Runtime's exact
    Q/DQ arithmetic; ``qdq``: whether the ONNX is INT8 QDQ (read from the file when None).
    """
    suffix = Path(model_path).suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt", f"a TensorRT engine ({suffix}) runs only in TensorRT"
    if suffix in CHECKPOINT_SUFFIXES:
        return "pytorch", f"a PyTorch checkpoint ({suffix}) runs in PyTorch"
    if not (is_qdq_onnx(model_path) if qdq is None else qdq):
        return "onnxruntime", "float ONNX model: ONNX Runtime (the reference CPU backend)"
    if exact_qdq:
        return "onnxruntime", ("INT8 QDQ model with exact_qdq: ONNX Runtime runs the Q/DQ "
                               "arithmetic as written")
    vnni = [f for f in X86_INT8_FLAGS if f in set(cpu_flags)]
    if "openvino" in set(installed) and vnni:
        return "openvino", (f"INT8 QDQ model on a CPU with {', '.join(vnni)} and OpenVINO "
                            "installed: OpenVINO runs it as INT8 (about 3x its FP32 speed)")
    if vnni:
        return "onnxruntime", (f"INT8 QDQ model; the CPU has {', '.join(vnni)} but OpenVINO is "
                               "not installed (pip install 'edge-resnet[openvino]' for faster "
                               "INT8): ONNX Runtime")
    return "onnxruntime", ("INT8 QDQ model on a CPU without VNNI/AMX (avx512_vnni, avx_vnni, "
                           "amx_int8): OpenVINO's INT8 loses accuracy there, so ONNX Runtime")


def resolve_backend(ref: ModelRef) -> Tuple[str, str]:
    """(backend, reason) for a reference: its own backend, or the auto choice on this machine."""
    if ref.backend != AUTO:
        return ref.backend, f"asked for ({ref.backend})"
    opts = ref.options
    exact = getattr(opts, "exact_qdq", False) if isinstance(opts, BackendOptions) else \
        bool((opts or {}).get("exact_qdq"))
    return choose_backend(ref.path, read_cpu_flags(), installed_runtimes(), exact_qdq=exact)


def open_model(ref: ModelRef, spec: Optional[ModelSpec] = None) -> "Backend":
    """Load ``ref`` with its backend (``auto`` resolved here) and its options typed for that
    backend; the backend and the reason are logged and kept in
    ``info.details["backend_choice"]`` for reports and bench tables. ``spec`` overrides the
    model's own metadata."""
    from edge_resnet.backends.base import load_backend

    name, reason = resolve_backend(ref)
    if ref.backend == AUTO:
        log.info("%s: backend %s (auto: %s)", ref.path, name, reason)
    if isinstance(ref.options, BackendOptions) and ref.options.backend not in ("", name):
        raise InputError(f"{ref.path}: auto chose the {name} backend ({reason}) but the "
                         f"options are {type(ref.options).__name__}; name the backend "
                         f"({ref.options.backend}:{ref.path}) or give generic settings")
    backend = load_backend(name, ref.path, typed_options(name, ref.options), spec=spec)
    backend.info.details["backend_choice"] = reason
    return backend
