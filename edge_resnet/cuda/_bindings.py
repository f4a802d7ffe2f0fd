"""cuda-python, imported lazily, and the one place CUDA status codes become SDK errors.

cuda-python returns ``(status, *values)`` tuples instead of raising. :func:`check` unpacks them
and raises at the call that failed, with a message that names what to do: out of memory is a
:class:`CudaOutOfMemoryError`, a machine without a usable GPU a :class:`NoCudaDeviceError`,
anything else a :class:`edge_resnet.core.BackendError`.

Two import layouts exist: ``cuda.bindings.{runtime,driver,nvrtc}`` (cuda-python >= 12.6, the
CUDA 13 wheels, JetPack 6/7) and ``cuda.{cudart,cuda,nvrtc}`` (cuda-python 11.8-12.5, JetPack 5).
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import threading
from typing import Any, Tuple

from edge_resnet.core import BackendError, DependencyError

__all__ = ["CudaOutOfMemoryError", "NoCudaDeviceError", "check", "cuda_modules",
           "nvrtc_check"]

_INSTALL_HINT = ("install cuda-python matching the CUDA driver: `pip install 'edge-resnet[cuda]'` "
                 "(JetPack 5: `pip install cuda-python==11.8.*`; JetPack 6: 12.6.*; JetPack 7: "
                 "13.*)")

_lock = threading.Lock()
_modules: "Tuple[Any, Any, Any] | None" = None


class NoCudaDeviceError(DependencyError):
    """No usable CUDA device or driver on this machine."""


class CudaOutOfMemoryError(BackendError):
    """A device or pinned-host allocation failed for lack of memory."""


def cuda_modules() -> Tuple[Any, Any, Any]:
    """``(runtime, driver, nvrtc)`` modules of cuda-python; :class:`DependencyError` if absent."""
    global _modules
    with _lock:
        if _modules is None:
            try:
                from cuda.bindings import driver, nvrtc, runtime
            except ImportError:
                try:
                    from cuda import cuda as driver  # type: ignore[no-redef]
                    from cuda import cudart as runtime  # type: ignore[no-redef]
                    from cuda import nvrtc  # type: ignore[no-redef]
                except ImportError as exc:
                    raise DependencyError(f"cuda-python is not installed; {_INSTALL_HINT}") \
                        from exc
            _modules = (runtime, driver, nvrtc)
        return _modules


def _status_name(status: Any) -> str:
    return str(getattr(status, "name", status))


def _message(status: Any) -> str:
    runtime, driver, _ = cuda_modules()
    try:
        if isinstance(status, runtime.cudaError_t):
            return runtime.cudaGetErrorString(status)[1].decode()
        err, text = driver.cuGetErrorString(status)
        return text.decode() if text else _status_name(status)
    except Exception:  # the message is informative only; the status name is always there
        return _status_name(status)


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(status, *values)`` result; raise the SDK error for a failure.

    Returns ``None``, the single value, or a tuple of values.
    """
    values = tuple(result) if isinstance(result, tuple) else (result,)
    status, rest = values[0], values[1:]
    if int(status) != 0:
        name = _status_name(status)
        detail = f"{what} failed: {name} ({_message(status)})"
        if "MemoryAllocation" in name or "OUT_OF_MEMORY" in name:
            raise CudaOutOfMemoryError(
                f"{detail}; use a smaller batch or input, or free GPU memory held by other "
                "programs (nvidia-smi / tegrastats shows who holds it)")
        if any(key in name for key in ("NoDevice", "NO_DEVICE", "InsufficientDriver",
                                       "INSUFFICIENT_DRIVER", "NOT_INITIALIZED",
                                       "InitializationError")):
            raise NoCudaDeviceError(
                f"{detail}; this needs an NVIDIA GPU with a working driver (check nvidia-smi, "
                "or on a Jetson that the user is in the 'video' group); use a CPU backend "
                "and preprocess=cpu otherwise")
        raise BackendError(detail)
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def nvrtc_check(result: Any, what: str, log: str = "") -> Any:
    """:func:`check` for NVRTC results (a different status enum), adding the compile log."""
    values = tuple(result) if isinstance(result, tuple) else (result,)
    if int(values[0]) != 0:
        raise BackendError(f"{what} failed: {_status_name(values[0])}"
                           + (f"\n{log}" if log else ""))
    rest = values[1:]
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest
