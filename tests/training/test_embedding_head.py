"""The embedding head (BN -> dropout -> FC -> BN) of ArcFace models: shape and sign of the
embedding, its checkpoint record, export as one folded Gemm with a parity proof of the
``features`` output, and ArcFace training on it lowering the loss.

Models here are random or trained on synthetic vectors, so nothing depends on a lucky model.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import onnx
import pytest
import torch

from edge_resnet.core import InputError, ModelError, ModelSpec, ParityError
from edge_resnet.export.embedding import EmbeddingHead, EmbeddingResNet
from edge_resnet.export.models import _resnet50, load_model, save_checkpoint
from edge_resnet.export.parity import check_parity, export_verified
from edge_resnet.training.arcface import ArcFaceLoss, CosineClassifier
from edge_resnet.training.options import LossOptions

SPEC = ModelSpec(labels=("a", "b", "c", "d", "e"), resolution=32, resize=None)


def _trained_stats(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics (a few train-mode batches)."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


@pytest.fixture(scope="module")
def head_model() -> torch.nn.Module:
    torch.manual_seed(3)
    return _trained_stats(_resnet50(5, 16))


def _images(n: int = 6) -> List[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_head_gives_a_signed_embedding_and_folds_into_one_linear(
        head_model: torch.nn.Module) -> None:
    assert isinstance(head_model, EmbeddingResNet)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        emb = head_model.features(x)
        assert emb.shape == (4, 16) and (emb < 0).any() and (emb > 0).any()
        torch.testing.assert_close(head_model(x), head_model.fc(emb))
        pooled = head_model.pooled(x)
        assert (pooled >= 0).all()                      # what the head is there to fix
        folded = head_model.embedding.as_linear()
        torch.testing.assert_close(folded(pooled), emb, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="width >= 1"):
        EmbeddingHead(2048, 0)


def test_loss_options_choose_the_head() -> None:
    assert LossOptions("arcface").embedding_dim == 512
    assert LossOptions("ce").head_dim is None
    assert LossOptions("arcface", embedding_dim=0).head_dim is None
    assert LossOptions("arcface", embedding_dim=128).recipe()["embedding_dim"] == 128
    with pytest.raises(InputError, match="embedding_dim"):
        LossOptions("arcface", embedding_dim=-1)
    with pytest.raises(InputError, match="embedding_dropout"):
        LossOptions("arcface", embedding_dropout=1.0)


def test_checkpoint_records_the_head_and_old_checkpoints_load_plain(
        head_model: torch.nn.Module, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "emb.pt", head_model, SPEC)
    assert torch.load(path, weights_only=True)["embedding_dim"] == 16
    loaded = load_model(str(path))
    assert loaded.embedding_dim == 16 and isinstance(loaded.model, EmbeddingResNet)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.features(x), head_model.features(x))
    # a plain torchvision state dict (no head) still loads as a plain ResNet50
    torch.save(_resnet50(5).state_dict(), tmp_path / "plain.pt")
    plain = load_model(str(tmp_path / "plain.pt"))
    assert plain.embedding_dim is None and not hasattr(plain.model, "embedding")
    # a record that disagrees with the weights is refused
    payload = torch.load(path, weights_only=True)
    payload["embedding_dim"] = 512
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(ModelError, match="embedding_dim=512 but its weights have 16"):
        load_model(str(tmp_path / "edited.pt"))


def test_export_features_is_the_raw_embedding_with_a_parity_proof(
        head_model: torch.nn.Module, tmp_path: Path) -> None:
    out = tmp_path / "emb.onnx"
    result, report = export_verified(head_model, SPEC, out, _images(), with_features=True)
    assert report is not None and report.ok and report.features_max_abs_diff is not None
    assert report.features_max_abs_diff <= report.features_tolerance
    assert result.output_shapes == {"logits": ["batch", 5], "features": ["batch", 16]}
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Gemm") == 2 and "BatchNormalization" not in ops
    # without --features the graph is logits only, still through the head
    _, plain_report = export_verified(head_model, SPEC, tmp_path / "logits.onnx", _images())
    assert plain_report is not None and plain_report.features_max_abs_diff is None


def test_parity_catches_features_that_the_logits_cannot_show(
        head_model: torch.nn.Module, tmp_path: Path) -> None:
    """Shift the embedding along a direction fc ignores (its null space): logits stay, the
    features output no longer matches the model, and the proof fails."""
    out = tmp_path / "emb.onnx"
    export_verified(head_model, SPEC, out, _images(), with_features=True)
    changed = _trained_stats(_resnet50(5, 16))
    changed.load_state_dict(head_model.state_dict())
    changed.eval()
    fc = changed.fc.weight.detach().double()
    null = torch.linalg.svd(fc, full_matrices=True).Vh[-1].float()   # 16-d, 5 rows: exists
    with torch.no_grad():
        changed.embedding.bn_out.bias += 0.5 * null
    with pytest.raises(ParityError, match="features max"):
        check_parity(changed, out, _images(), SPEC)


def test_arcface_on_the_head_lowers_the_loss() -> None:
    """Head + cosine classifier + ArcFace on fixed non-negative 'pooled' vectors of 6 classes:
    80 Adam steps must cut the loss well below its start (margin on from the first step)."""
    torch.manual_seed(0)
    centres = torch.rand(6, 2048)
    labels = torch.arange(6).repeat_interleave(20)
    pooled = torch.relu(centres[labels] + 0.3 * torch.randn(120, 2048))
    head, classifier = EmbeddingHead(2048, 32, dropout=0.1), CosineClassifier(32, 6, 16.0)
    loss_fn = ArcFaceLoss(0.3, 16.0)
    opt = torch.optim.Adam([*head.parameters(), *classifier.parameters()], lr=1e-2)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = loss_fn(classifier(head(pooled)), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]
