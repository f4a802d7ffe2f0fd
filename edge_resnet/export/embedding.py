"""The embedding head of ``finetune --loss arcface --embedding-dim N`` models.

InsightFace puts a small head between the backbone's pooled features and the margin loss:
BatchNorm -> dropout -> FC -> BatchNorm, giving a signed embedding (512-d by default). A plain
ResNet50 has none: its pooled features come after a ReLU, so they are non-negative, lie in one
orthant and make a poor space for cosine matching. :class:`EmbeddingResNet` is torchvision's
ResNet50 body (same attribute and state-dict names) + that head + an ``fc`` on the embedding,
so loading, parity, the PyTorch backend and export handle it like the plain model; export
folds the eval-mode head into one Gemm (:meth:`EmbeddingHead.as_linear`).
Host side (torch).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from edge_resnet.core import InputError, ModelError

__all__ = ["BODY_PARTS", "EmbeddingHead", "EmbeddingResNet", "POOLED_FEATURES", "ResNetBody",
           "embedding_dim_of"]

POOLED_FEATURES = 2048  # width of ResNet50's pooled feature vector
BODY_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
               "avgpool")


class ResNetBody(nn.Module):
    """A torchvision ResNet's body adopted under its own attribute names (so state-dict keys and
    exported tensor names stay torchvision's), and its pooled features: the one trunk that the
    embedding model and the export wrapper both run."""

    conv1: nn.Module
    bn1: nn.Module
    relu: nn.Module
    maxpool: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module
    avgpool: nn.Module

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        for name in BODY_PARTS:
            setattr(self, name, getattr(resnet, name))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class EmbeddingHead(nn.Module):
    """InsightFace's embedding head on the pooled features: BN -> dropout -> FC -> BN.

    ResNet50's pooled features come after a ReLU, so they are non-negative and all lie in one
    orthant: cosine similarities between different identities start high and the margin loss
    has little room. The head maps them to a signed ``dim``-d vector centred by its last
    BatchNorm, the embedding that ArcFace trains and a gallery matches (after L2
    normalisation). In eval mode the whole head is one affine map, which export folds into a
    single Gemm.
    """

    def __init__(self, in_features: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim < 1 or not 0.0 <= dropout < 1.0:
            raise InputError(f"an embedding head needs a width >= 1 and a dropout in [0, 1) "
                             f"(got {dim}, {dropout})")
        self.bn_in = nn.BatchNorm1d(in_features)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, dim)
        self.bn_out = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_out(self.linear(self.dropout(self.bn_in(x))))

    def as_linear(self) -> nn.Linear:
        """The eval-mode head as one ``nn.Linear`` (both BatchNorms folded in; float64 math)."""
        def affine(bn: nn.BatchNorm1d) -> Tuple[torch.Tensor, torch.Tensor]:
            if bn.running_var is None or bn.running_mean is None:
                raise ModelError("the embedding head's BatchNorm keeps no running statistics; "
                                 "it cannot be folded for export")
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            return scale, bn.bias.double() - bn.running_mean.double() * scale

        with torch.no_grad():
            s_in, b_in = affine(self.bn_in)
            s_out, b_out = affine(self.bn_out)
            w = self.linear.weight.double()
            weight = s_out[:, None] * w * s_in[None, :]
            bias = s_out * (w @ b_in + self.linear.bias.double()) + b_out
            folded = nn.Linear(w.shape[1], w.shape[0])
            folded.weight.copy_(weight.float())
            folded.bias.copy_(bias.float())
        return folded.eval()


class EmbeddingResNet(ResNetBody):
    """A torchvision ResNet50 body with an :class:`EmbeddingHead` between pooling and ``fc``.

    The body keeps torchvision's attribute names (state-dict keys ``conv1.weight``, ...,
    ``layer4.*``), the head is ``embedding.*`` and ``fc`` classifies the embedding
    (``embedding_dim`` inputs). ``features(x)`` is the raw embedding; ``forward`` the logits,
    so every stage that runs the model (parity, the PyTorch backend) needs nothing new.
    """

    def __init__(self, resnet: nn.Module, embedding_dim: int, num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__(resnet)
        self.embedding = EmbeddingHead(POOLED_FEATURES, embedding_dim, dropout)
        self.fc: nn.Module = nn.Linear(embedding_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pooled(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def embedding_dim_of(model: nn.Module) -> Optional[int]:
    """The embedding width of an :class:`EmbeddingResNet`, None for a plain ResNet."""
    head = getattr(model, "embedding", None)
    return int(head.linear.out_features) if isinstance(head, EmbeddingHead) else None
