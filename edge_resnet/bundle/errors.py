"""Errors of the bundle stage, in the SDK's one hierarchy.

``BundleError`` (an :class:`~edge_resnet.core.InputError`: the bundle is what the user handed
over) is a refusal: the CLI prints one line and exits 2, nothing on disk changed.
``HealthCheckError`` is a :class:`~edge_resnet.core.GateError`: the release was staged, failed
its on-device health check and was discarded, so the CLI exits 1 like any breached gate;
``EngineBuildError`` likewise for an engine that could not be planned or built at install.
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

from edge_resnet.core import GateError, InputError

__all__ = ["BundleError", "EngineBuildError", "HealthCheckError", "SignatureError", "SlotError"]


class BundleError(InputError):
    """A bundle, its manifest or an install request is refused."""


class SignatureError(BundleError):
    """The manifest signature does not verify with the fleet certificate."""


class SlotError(BundleError):
    """The slot root cannot do what was asked (nothing pending, nothing to roll back to)."""


class HealthCheckError(GateError):
    """The staged release failed its health check; it was discarded and the reason recorded."""


class EngineBuildError(GateError):
    """An engine this device needs could not be planned or built at install; the staged release
    was discarded and the reason recorded (exit 1, like a failed health check)."""
