"""Fleet bundles: signed model releases, verified, installed into A/B slots, health-checked.

``signing`` holds the fleet identity, ``manifest`` the versioned schema, ``archive`` the safe
reading of a bundle file, ``create`` (host) builds one, ``slots`` installs, commits and rolls
back on the device, ``engines`` decides and builds the device's TensorRT engines at install,
``health`` runs the on-device check, ``runner`` runs the active release, ``export`` writes OTA
artifacts.
Device side (everything but ``create`` and ``export``): Python 3.8, no torch.
"""

from edge_resnet.bundle.errors import (BundleError, EngineBuildError, HealthCheckError,
                                       SignatureError, SlotError)

__all__ = ["BundleError", "EngineBuildError", "HealthCheckError", "SignatureError", "SlotError"]
