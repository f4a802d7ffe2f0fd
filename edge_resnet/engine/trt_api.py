"""The TensorRT Python API across 8.5/8.6, 10.x and 11.x, in one place.

Typed against ``tensorrt-stubs`` (TensorRT 10.13). Where 8.5/8.6 or 11 differ from 10.x, the
adapter says so and cites the source (facts doc, "Python API across TensorRT generations"):
- network flags: 8.x needs ``EXPLICIT_BATCH`` (implicit batch is the 8.x default); 10.x ignores
  it and takes ``STRONGLY_TYPED``; 11.x networks are always strongly typed.
- ``BuilderFlag.FP16/INT8`` and calibrators: removed in 11.0 (the plan never asks for them).
- ``IProgressMonitor`` / ``config.progress_monitor``: 10.0+; earlier builds get only the
  heartbeat thread of :mod:`edge_resnet.engine.builder`.
- ``builder_optimization_level``: 8.6+ (the plan leaves it None on 8.5).
Named-tensor execution (``set_tensor_address``, ``execute_async_v3``) is the same from 8.5 on.
Device side: Python 3.8; TensorRT is imported only when a function here is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from edge_resnet.core import DependencyError
from edge_resnet.devices.trt_versions import TrtVersion, parse_version

if TYPE_CHECKING:  # the stubs: mypy checks every call below against the real 10.x signatures
    import tensorrt as trt

__all__ = ["CapturingLogger", "import_tensorrt", "installed_version", "make_progress_monitor",
           "network_flags", "set_precision_flags"]

INSTALL_HINT = ("TensorRT is not installed: on a Jetson it comes with JetPack (`sudo apt install "
                "python3-libnvinfer`; a venv needs --system-site-packages), on x86 `pip install "
                "tensorrt`; `edge-resnet build --dry-run` plans without it")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a :class:`DependencyError` naming what to install. The
    ``tensorrt-stubs`` package installs a ``tensorrt`` folder with no code: refused too."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise DependencyError(INSTALL_HINT) from exc
    except OSError as exc:  # the wheel is there but libnvinfer is not loadable
        raise DependencyError(f"TensorRT is installed but cannot load its libraries ({exc}); "
                              "reinstall it matching this CUDA") from exc
    if not getattr(module, "__version__", None) or not hasattr(module, "Builder"):
        where = ", ".join(str(p) for p in getattr(module, "__path__", [])) or "?"
        raise DependencyError(f"{INSTALL_HINT} (`import tensorrt` found only a folder without "
                              f"the library: {where})")
    return module


def installed_version(trt_module: Any) -> TrtVersion:
    return parse_version(".".join(str(trt_module.__version__).split(".")[:3]))


def network_flags(version: TrtVersion, strongly_typed: bool) -> int:
    """Flags for ``Builder.create_network``."""
    import tensorrt as trt

    flags = 0
    if version.major < 10:
        # 8.x: explicit batch must be asked for (removed from the API's meaning in 10.0).
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif version.major == 10 and strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # 11.x: strongly typed always; the flag is ignored there, so it is not passed.
    return flags


def set_precision_flags(config: "trt.IBuilderConfig", names: List[str]) -> None:
    """Set the plan's builder flags by name (FP16, INT8, GPU_FALLBACK) on ``config``."""
    import tensorrt as trt

    for name in names:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:  # e.g. FP16 on 11.x: the plan should never have asked
            raise DependencyError(f"this TensorRT has no BuilderFlag.{name}; re-plan the build "
                                  "with the installed TensorRT version")
        config.set_flag(flag)


class CapturingLogger:
    """Keeps every TensorRT message (the build log beside the engine) and hands each to
    ``on_message`` (progress). ``impl`` is the ``trt.ILogger`` TensorRT calls."""

    def __init__(self, on_message: Optional[Callable[[str, str], None]] = None) -> None:
        import tensorrt as trt

        self.lines: List[str] = []
        lines = self.lines

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: "trt.ILogger.Severity", msg: str) -> None:
                # A Python ILogger receives every message; VERBOSE ones run to thousands per
                # build and cost a Python call each, so they are dropped here.
                if severity == trt.ILogger.Severity.VERBOSE:
                    return
                level = str(severity).rsplit(".", 1)[-1]
                lines.append(f"[{level}] {msg}")
                if on_message is not None:
                    on_message(level, msg)

        self.impl = _Logger()


def make_progress_monitor(on_phase: Callable[[str], None]) -> "Optional[trt.IProgressMonitor]":
    """An ``IProgressMonitor`` reporting phase starts (10.0+), or None before 10.0."""
    import tensorrt as trt

    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            on_phase(phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            return None

    return _Monitor()
