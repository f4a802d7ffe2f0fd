"""Training options and choices, stdlib only: the CLI builds its arguments from them without
importing torch (so ``edge-resnet --help`` stays instant and a device without torch can list
commands), and :mod:`edge_resnet.training.finetune` validates with the same values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from edge_resnet.core import InputError

__all__ = ["INIT_CHOICES", "LOSS_CHOICES", "LossOptions"]

INIT_CHOICES = ("auto", "imagenet-v1", "imagenet-v2", "scratch")
LOSS_CHOICES = ("ce", "arcface")


@dataclass(frozen=True)
class LossOptions:
    """The training loss: ``ce`` (softmax classifier) or ``arcface`` (additive angular margin on
    the L2-normalised pooled features, :mod:`edge_resnet.training.arcface`), whose margin ramps up
    over the first ``warmup_epochs`` so a network trained from scratch gets going first."""

    name: str = "ce"
    margin: float = 0.1
    scale: float = 16.0
    warmup_epochs: int = 5

    def __post_init__(self) -> None:
        if self.name not in LOSS_CHOICES:
            raise InputError(f"loss must be one of {', '.join(LOSS_CHOICES)}, got {self.name!r}")
        if not 0.0 <= self.margin < 1.5 or self.scale <= 0 or self.warmup_epochs < 0:
            raise InputError(f"arcface needs a margin in [0, 1.5) radians, a positive scale and "
                             f"warm-up epochs >= 0 (got {self.margin}, {self.scale}, "
                             f"{self.warmup_epochs})")

    def recipe(self) -> Dict[str, Any]:
        if self.name == "ce":
            return {"loss": "ce"}
        return {"loss": "arcface", "arcface_margin": self.margin, "arcface_scale": self.scale,
                "arcface_warmup_epochs": self.warmup_epochs,
                "embedding": "pooled 2048-d features, L2-normalised (export --features); fc rows "
                             "are the unit class centres times the scale, no bias"}
