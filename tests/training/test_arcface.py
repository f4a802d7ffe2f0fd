"""ArcFace fine-tuning: the loss's arithmetic, the checkpoint it leaves (ResNet50 + the 512-d
embedding head + a plain ``fc``), and the whole path finetune --loss arcface -> export
--features -> gallery eval on unseen glyphs.

Training here is tiny (8 identities, 2 epochs on CPU): it checks the mechanics, not accuracy.
The comparison with classifier features is measured by benchmarks/faceid.py (docs/face-id.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edge_resnet.cli import main
from edge_resnet.core import InputError
from edge_resnet.datasets.glyphs import EVAL_GLYPHS, TRAIN_GLYPHS, write_glyph_folder
from edge_resnet.training.arcface import ArcFaceLoss, CosineClassifier, to_linear
from edge_resnet.training.options import LossOptions
from edge_resnet.export.models import load_model


def test_arcface_loss_arithmetic() -> None:
    torch.manual_seed(0)
    s, m = 16.0, 0.3
    cos = torch.rand(5, 4) * 1.6 - 0.8
    target = torch.tensor([0, 1, 2, 3, 0])
    plain = ArcFaceLoss(0.0, s)(s * cos, target)
    assert torch.allclose(plain, F.cross_entropy(s * cos, target), atol=1e-5)
    theta = torch.acos(cos.gather(1, target[:, None]))
    expected_logits = cos.clone().scatter(1, target[:, None], torch.cos(theta + m))
    got = ArcFaceLoss(m, s)(s * cos, target)
    assert torch.allclose(got, F.cross_entropy(s * expected_logits, target), atol=1e-5)
    assert got > plain                                  # the margin makes the task harder
    # beyond pi - m the target logit falls back to cos - m sin m (keeps decreasing in theta)
    far = torch.tensor([[-0.99, 0.5]])
    fallback = torch.tensor([[-0.99 - m * math.sin(m), 0.5]])
    assert torch.allclose(ArcFaceLoss(m, s)(s * far, torch.tensor([0])),
                          F.cross_entropy(s * fallback, torch.tensor([0])), atol=1e-5)


def test_cosine_classifier_becomes_an_equivalent_plain_linear() -> None:
    torch.manual_seed(1)
    head = CosineClassifier(2048, 7, scale=16.0)
    feats = torch.relu(torch.randn(32, 2048))
    linear = to_linear(head)
    assert torch.equal(head(feats).argmax(1), linear(feats).argmax(1))
    torch.testing.assert_close(linear.weight.norm(dim=1), torch.full((7,), 16.0))
    assert torch.count_nonzero(linear.bias) == 0
    # each logit is the cosine logit times the feature norm
    torch.testing.assert_close(linear(feats), head(feats) * feats.norm(dim=1, keepdim=True),
                               rtol=1e-4, atol=1e-4)


def test_loss_options_refuse_nonsense() -> None:
    with pytest.raises(InputError, match="loss must be one of"):
        LossOptions("triplet")
    with pytest.raises(InputError, match="margin"):
        LossOptions("arcface", margin=2.0)


@pytest.fixture(scope="module")
def glyph_dirs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("glyphs")
    write_glyph_folder(root / "train", TRAIN_GLYPHS[:8], per_identity=10, size=32, seed=1)
    write_glyph_folder(root / "eval", EVAL_GLYPHS[:10], per_identity=7, size=32, seed=2)
    return {"train": root / "train", "eval": root / "eval"}


@pytest.fixture(scope="module")
def arcface_ckpt(glyph_dirs: Dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`edge-resnet finetune --loss arcface` on 8 glyph identities (2 epochs, CPU)."""
    ckpt = tmp_path_factory.mktemp("arcface") / "arc.pt"
    assert main(["finetune", str(glyph_dirs["train"]), "--out", str(ckpt), "--resolution", "32",
                 "--epochs", "2", "--batch-size", "16", "--init", "scratch", "--threads", "2",
                 "--loss", "arcface", "--arcface-margin", "0.2", "--arcface-warmup", "1"]) == 0
    return ckpt


def test_finetune_arcface_export_features_and_gallery_eval(
        glyph_dirs: Dict[str, Path], arcface_ckpt: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    ckpt, onnx = arcface_ckpt, tmp_path / "arc.onnx"
    loaded = load_model(str(ckpt))                      # ResNet50 + embedding head + fc
    recipe = loaded.extra["recipe"]
    assert (recipe["loss"], recipe["arcface_margin"], recipe["arcface_scale"],
            recipe["embedding_dim"]) == ("arcface", 0.2, 16.0, 512)
    assert loaded.embedding_dim == loaded.extra["embedding_dim"] == 512
    fc = loaded.model.fc
    assert isinstance(fc, torch.nn.Linear) and (fc.in_features, fc.out_features) == (512, 8)
    torch.testing.assert_close(fc.weight.norm(dim=1), torch.full((8,), 16.0))
    assert main(["export", str(ckpt), "--out", str(onnx), "--features", "--no-check"]) == 0
    report, plots = tmp_path / "eval.json", tmp_path / "plots"
    capsys.readouterr()
    assert main(["gallery", "eval", str(glyph_dirs["eval"]), "--model", str(onnx),
                 "--threads", "2", "--draws", "2", "--json", str(report),
                 "--plots", str(plots)]) == 0
    printed = capsys.readouterr().out
    assert "TAR@FAR 0.01" in printed and "ROC: TAR at FAR" in printed
    rep = json.loads(report.read_text())
    sizes = {s["photos"]: s for s in rep["sizes"]}
    assert set(sizes) == {1, 5} and sizes[1]["identities"] == 10
    assert sizes[1]["mated_probes"] == sizes[1]["nonmated_probes"] == 2 * 10 * 6
    assert sizes[5]["mated_probes"] == 2 * 10 * 2
    assert all(0.0 <= t["tar"] <= 1.0 for s in rep["sizes"] for t in s["tar_at_far"])
    png = (plots / "roc.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_onnx_features_equal_the_checkpoints_embedding(
        glyph_dirs: Dict[str, Path], arcface_ckpt: Path, tmp_path: Path) -> None:
    """What gallery eval matches on is exactly the embedding the loss trained (raw: the
    gallery normalises it)."""
    from edge_resnet.backends import load_backend
    from edge_resnet.export.onnx_export import export_onnx
    from edge_resnet.images import ImageFolder
    from edge_resnet.preprocessing import preprocess_batch

    ckpt = arcface_ckpt
    loaded = load_model(str(ckpt))
    export_onnx(loaded.model, loaded.spec, tmp_path / "arc1.onnx", with_features=True)
    images = [img for _, img in ImageFolder(glyph_dirs["eval"], labeled=True).iter_images()][:8]
    batch = preprocess_batch(images, loaded.spec)
    trunk = load_model(str(ckpt)).model
    trunk.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = trunk(torch.from_numpy(batch)).numpy()
    with load_backend("onnxruntime", tmp_path / "arc1.onnx", threads=2) as backend:
        got = backend.infer(batch).features
    assert got is not None and got.shape == (8, 512)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_cuda_training_is_refused_without_a_gpu(glyph_dirs: Dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    code = main(["finetune", str(glyph_dirs["train"]), "--out", str(tmp_path / "x.pt"),
                 "--device", "cuda", "--loss", "arcface"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU" in err and "Traceback" not in err


def _gemm_inputs(path: Path) -> Dict[str, bool]:
    """Gemm node name -> whether its activation input comes from a DequantizeLinear."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return {n.name: producer.get(n.input[0]) == "DequantizeLinear"
            for n in graph.node if n.op_type == "Gemm"}


def test_head_model_calibrates_to_int8_with_its_features(
        glyph_dirs: Dict[str, Path], arcface_ckpt: Path, tmp_path: Path) -> None:
    """An ArcFace model with its embedding head goes through INT8 calibration: the QDQ model
    keeps the ``features`` output, the head's Gemm stays float with the classifier (both are
    quantized with --quantize-fc), and its embeddings stay close to the FP32 ones."""
    import onnx

    from edge_resnet.backends import load_backend
    from edge_resnet.images import ImageFolder
    from edge_resnet.runtime.gallery import embed_images

    fp32 = tmp_path / "arc.onnx"
    assert main(["export", str(arcface_ckpt), "--out", str(fp32), "--features",
                 "--no-check"]) == 0
    stats = tmp_path / "arc.stats.npz"
    for out, extra in ((tmp_path / "cal", []), (tmp_path / "calfc", ["--quantize-fc"])):
        assert main(["calibrate", str(fp32), str(glyph_dirs["train"]), "--out", str(out),
                     "--method", "minmax", "--num-images", "64", "--stats", str(stats),
                     "--threads", "2", "--no-progress", *extra]) == 0
    qdq = tmp_path / "cal" / "arc.int8.minmax.onnx"
    qdq_fc = tmp_path / "calfc" / "arc.int8.minmax.onnx"
    graph = onnx.load(str(qdq), load_external_data=False).graph
    assert [o.name for o in graph.output] == ["logits", "features"]
    assert _gemm_inputs(qdq) == {"/embedding/Gemm": False, "/fc/Gemm": False}
    assert _gemm_inputs(qdq_fc) == {"/embedding/Gemm": True, "/fc/Gemm": True}
    images = [img for _, img in ImageFolder(glyph_dirs["eval"], labeled=True).iter_images()]
    ref = embed_images(load_backend("onnxruntime", str(fp32), threads=2), images, 32)
    int8 = embed_images(load_backend("onnxruntime", str(qdq), threads=2), images, 32)
    cosine = (ref * int8).sum(axis=1)
    assert ref.shape == int8.shape == (len(images), 512)
    assert float(np.median(cosine)) > 0.9, cosine
