"""Fine-tuning: the shared digits model's accuracy, checkpoint contents, determinism, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
import torch

from edge_resnet.cli import main
from edge_resnet.core import DataError, DependencyError, InputError
from edge_resnet.training.finetune import finetune
from edge_resnet.export.models import load_model
from edge_resnet.preprocessing import preprocess_batch


@pytest.fixture()
def tiny_folder(tmp_path: Path, digits_dirs: Any) -> Path:
    """3 classes x 16 digits plus one corrupt file, copied from the digits training folder."""
    root = tmp_path / "tiny"
    for digit in ("0", "1", "2"):
        (root / digit).mkdir(parents=True)
        for src in sorted((digits_dirs.train_dir / digit).glob("*.png"))[:16]:
            shutil.copy(src, root / digit / src.name)
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_fixture_model_reaches_95_percent_on_digits_test(
        digits_model: Any, digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    spec = digits_model.spec
    assert spec.labels == tuple(str(d) for d in range(10))
    assert (spec.resolution, spec.resize) == (32, None)
    labels = np.array([label for _, label in digits_test_images])
    batch = preprocess_batch([img for img, _ in digits_test_images], spec)
    with torch.inference_mode():
        preds = digits_model.model(torch.from_numpy(batch)).argmax(1).numpy()
    accuracy = float((preds == labels).mean())
    assert len(labels) == 359
    assert accuracy >= 0.95, f"digits test accuracy {accuracy:.4f}"
    stored = digits_model.extra["metrics"]["test_accuracy"]
    assert abs(stored - accuracy) < 1e-9  # finetune's own scoring uses the same preprocessing


def test_tiny_finetune_writes_checkpoint_with_spec_and_recipe(
        tmp_path: Path, tiny_folder: Path, empty_hub: Path) -> None:
    out = tmp_path / "out" / "tiny.pt"
    result = finetune(tiny_folder, out, resolution=32, epochs=2, batch_size=8, seed=3,
                      init="auto", progress=False)
    assert result.init == "scratch"  # no ImageNet weights cached here: recorded, not hidden
    assert result.skipped == 1 and result.num_train + result.num_val == 48
    assert len(result.val_accuracy) == 2 and len(result.train_loss) == 2
    assert result.test_accuracy is None and result.checkpoint == out
    loaded = load_model(str(out))
    assert loaded.spec.labels == ("0", "1", "2")
    assert (loaded.spec.resolution, loaded.spec.resize) == (32, None)
    assert loaded.extra["init"] == "scratch"
    assert loaded.extra["recipe"]["init_requested"] == "auto"
    assert loaded.extra["recipe"]["epochs"] == 2
    assert loaded.extra["metrics"]["val_accuracy"] == result.val_accuracy


def test_cli_and_library_train_identical_weights_for_a_seed(
        tmp_path: Path, tiny_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = finetune(tiny_folder, tmp_path / "lib.pt", resolution=32, resize=36, epochs=1,
                   batch_size=8, seed=5, init="scratch", progress=False)
    code = main(["finetune", str(tiny_folder), "--out", str(tmp_path / "cli.pt"),
                 "--resolution", "32", "--resize", "36", "--epochs", "1", "--batch-size", "8",
                 "--seed", "5", "--init", "scratch"])
    assert code == 0
    assert "init=scratch, 1 epochs" in capsys.readouterr().out
    a = load_model(str(tmp_path / "lib.pt"))
    b = load_model(str(tmp_path / "cli.pt"))
    assert a.spec.resize == 36
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.extra["metrics"]["val_accuracy"] == lib.val_accuracy


def test_imagenet_init_without_cached_weights_is_refused(tmp_path: Path, tiny_folder: Path,
                                                         empty_hub: Path) -> None:
    with pytest.raises(DependencyError, match="download https://.*resnet50-0676ba61.pth"):
        finetune(tiny_folder, tmp_path / "m.pt", resolution=32, epochs=1, init="imagenet-v1",
                 progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_bad_arguments_and_data_are_refused(tmp_path: Path, tiny_folder: Path) -> None:
    with pytest.raises(InputError, match="init must be one of"):
        finetune(tiny_folder, tmp_path / "m.pt", init="imagenet")
    with pytest.raises(InputError, match="resize 20 is smaller than the crop 32"):
        finetune(tiny_folder, tmp_path / "m.pt", resolution=32, resize=20)
    with pytest.raises(InputError, match="validation fraction"):
        finetune(tiny_folder, tmp_path / "m.pt", val_fraction=0.0)
    with pytest.raises(InputError, match="is a directory; give a file path"):
        finetune(tiny_folder, tmp_path, resolution=32)  # refused before any training
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no files"):
        finetune(tmp_path / "empty", tmp_path / "m.pt", resolution=32)
    assert not (tmp_path / "m.pt").exists()


def test_auto_init_starts_from_cached_imagenet_weights(tmp_path: Path, tiny_folder: Path,
                                                       empty_hub: Path) -> None:
    from torchvision.models import resnet50

    from edge_resnet.export.models import hub_weights_path

    cached, _ = hub_weights_path("imagenet-v1")
    cached.parent.mkdir(parents=True)
    torch.manual_seed(7)
    stand_in = resnet50(weights=None)  # same format as the real download
    torch.save(stand_in.state_dict(), cached)
    result = finetune(tiny_folder, tmp_path / "m.pt", resolution=32, epochs=1, batch_size=8,
                      lr=1e-9, init="auto", threads=1, progress=False)
    assert result.init == "imagenet-v1"
    tuned = load_model(str(tmp_path / "m.pt"))
    assert tuned.extra["recipe"]["init"] == "imagenet-v1"
    assert tuned.model.fc.out_features == 3  # a fresh head for the folder's classes
    # With a vanishing learning rate the backbone is still the cached weights.
    conv = tuned.model.state_dict()["conv1.weight"]
    assert torch.allclose(conv, stand_in.state_dict()["conv1.weight"], atol=1e-6)
