"""ArcFace (additive angular margin, Deng et al. 2019; InsightFace) for ``finetune --loss arcface``.

The embedding is L2-normalised and the class centres are the rows of a cosine classifier.
Training adds the margin ``m`` to the angle between an embedding and its own class centre,
``s * cos(theta + m)``, which pulls each identity's embeddings together and pushes identities
apart by an angle: what a gallery matched by cosine similarity needs.

By default the embedding is the output of InsightFace's embedding head (512-d, signed;
:mod:`edge_resnet.export.embedding`) on top of ResNet50's pooled features; with
``embedding_dim=0`` it is the pooled 2048-d feature itself, which is non-negative (after ReLU
and average pooling), so all embeddings lie in one orthant and cosines between identities
start high. After training the cosine classifier becomes an ordinary ``fc`` (rows = unit class
centres x ``s``, no bias), so the checkpoint loads and exports like any other: the exported
``features`` output is the embedding (raw, not normalised), and the logits rank classes exactly
as the cosine classifier does (each logit is the cosine times ``s`` times the embedding's norm,
which is the same for every class of one image).
Host side (torch).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ArcFaceLoss", "CosineClassifier", "to_linear"]


class CosineClassifier(nn.Module):
    """``s * cos(angle between the L2-normalised input and each unit class centre)``."""

    def __init__(self, in_features: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class ArcFaceLoss(nn.Module):
    """Cross-entropy on ``s * cos(theta + m)`` for the true class, ``s * cos(theta)`` for others.

    Takes the :class:`CosineClassifier` output (scaled cosines). Where ``theta + m`` would pass
    pi the standard fallback ``cos(theta) - m * sin(m)`` keeps the target logit decreasing in
    theta (InsightFace's ``easy_margin=False``). ``margin`` may be changed between epochs
    (warm-up).
    """

    def __init__(self, margin: float, scale: float) -> None:
        super().__init__()
        self.margin = float(margin)
        self.scale = float(scale)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cos = (logits / self.scale).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        m = self.margin
        cos_t = cos.gather(1, target[:, None])
        sin_t = torch.sqrt(1.0 - cos_t * cos_t)
        phi = cos_t * math.cos(m) - sin_t * math.sin(m)
        phi = torch.where(cos_t > math.cos(math.pi - m), phi, cos_t - m * math.sin(m))
        adjusted = cos.scatter(1, target[:, None], phi)
        return F.cross_entropy(self.scale * adjusted, target)


def to_linear(head: CosineClassifier) -> nn.Linear:
    """The trained cosine classifier as a plain ``nn.Linear`` (unit centres x scale, no bias)."""
    out_features, in_features = head.weight.shape
    linear = nn.Linear(int(in_features), int(out_features))
    with torch.no_grad():
        linear.weight.copy_(head.scale * F.normalize(head.weight.detach(), dim=1))
        linear.bias.zero_()
    return linear
