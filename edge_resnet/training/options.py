"""Training options and choices, stdlib only: the CLI builds its arguments from them without
importing torch (so ``edge-resnet --help`` stays instant and a device without torch can list
commands), and :mod:`edge_resnet.training.finetune` validates with the same values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from edge_resnet.core import InputError

__all__ = ["ARCFACE_EMBEDDING_DIM", "INIT_CHOICES", "LOSS_CHOICES", "LossOptions"]

INIT_CHOICES = ("auto", "imagenet-v1", "imagenet-v2", "scratch")
LOSS_CHOICES = ("ce", "arcface")
ARCFACE_EMBEDDING_DIM = 512  # InsightFace's embedding width


@dataclass(frozen=True)
class LossOptions:
    """The training loss and the embedding it trains.

    ``ce`` is a softmax classifier; ``arcface`` an additive angular margin
    (:mod:`edge_resnet.training.arcface`) whose margin ramps up over the first
    ``warmup_epochs`` so a network trained from scratch gets going first.
    ``embedding_dim`` puts InsightFace's embedding head (BN -> dropout ``embedding_dropout``
    -> FC 2048->N -> BN, :mod:`edge_resnet.export.embedding`) between the pooled features and
    the classifier; 0 means none (the classifier reads the pooled 2048-d features). ``None``
    (default) means 512 for ``arcface`` and none for ``ce``, so ``ce`` checkpoints stay plain
    torchvision ResNet50s.
    """

    name: str = "ce"
    margin: float = 0.1
    scale: float = 16.0
    warmup_epochs: int = 5
    embedding_dim: Optional[int] = None
    embedding_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_CHOICES:
            raise InputError(f"loss must be one of {', '.join(LOSS_CHOICES)}, got {self.name!r}")
        if not 0.0 <= self.margin < 1.5 or self.scale <= 0 or self.warmup_epochs < 0:
            raise InputError(f"arcface needs a margin in [0, 1.5) radians, a positive scale and "
                             f"warm-up epochs >= 0 (got {self.margin}, {self.scale}, "
                             f"{self.warmup_epochs})")
        if self.embedding_dim is None:
            default = ARCFACE_EMBEDDING_DIM if self.name == "arcface" else 0
            object.__setattr__(self, "embedding_dim", default)
        if not isinstance(self.embedding_dim, int) or self.embedding_dim < 0:
            raise InputError(f"embedding_dim must be a whole number >= 0 (0: no embedding head), "
                             f"got {self.embedding_dim!r}")
        if not 0.0 <= self.embedding_dropout < 1.0:
            raise InputError(f"embedding_dropout must be in [0, 1), got {self.embedding_dropout}")

    @property
    def head_dim(self) -> Optional[int]:
        """Width of the embedding head, None when the classifier reads the pooled features."""
        return self.embedding_dim or None

    def recipe(self) -> Dict[str, Any]:
        head: Dict[str, Any] = {"embedding_dim": self.head_dim}
        if self.head_dim:
            head["embedding_dropout"] = self.embedding_dropout
        if self.name == "ce":
            return {"loss": "ce", **head}
        where = (f"{self.head_dim}-d embedding head (BN, dropout, FC, BN; export --features "
                 "gives it raw, galleries L2-normalise it)" if self.head_dim else
                 "pooled 2048-d features, L2-normalised (export --features)")
        return {"loss": "arcface", "arcface_margin": self.margin, "arcface_scale": self.scale,
                "arcface_warmup_epochs": self.warmup_epochs, **head,
                "embedding": f"{where}; fc rows are the unit class centres times the scale, "
                             "no bias"}
