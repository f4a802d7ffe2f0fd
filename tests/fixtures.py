"""Session fixtures: real data and a real ResNet50 for every stage's tests, built once.

Weights cannot be downloaded here, so the tests train their own ResNet50 on scikit-learn's
bundled digits (32x32) and cache the checkpoint on disk, keyed by the recipe, the SDK version
and the torch version. A file lock makes parallel pytest processes wait for one training run
instead of racing. Cache folder: ``$EDGE_RESNET_TEST_CACHE`` or ``<repo>/.cache/test-fixtures``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from edge_resnet import __version__
from edge_resnet.images import ImageFolder

ROOT = Path(__file__).resolve().parents[1]

DIGITS_PARAMS: Dict[str, Any] = {"size": 32, "test_fraction": 0.2, "seed": 0}
# The recipe of the shared test model (edge_resnet.training.finetune.finetune arguments).
# ``EDGE_RESNET_FIXTURE_SEED`` trains the same recipe from another seed: the tests must pass for
# any model the recipe produces (CPU training differs between machines), so they are run
# against several seeds before an accuracy-dependent change lands.
DIGITS_RECIPE: Dict[str, Any] = {"resolution": 32, "resize": None, "epochs": 8, "batch_size": 32,
                                 "lr": 2e-3, "weight_decay": 0.05, "val_fraction": 0.1,
                                 "seed": int(os.environ.get("EDGE_RESNET_FIXTURE_SEED", "0")),
                                 "init": "scratch", "augment": True}

__all__ = ["DIGITS_PARAMS", "DIGITS_RECIPE", "cache_dir", "digits_checkpoint", "digits_dirs",
           "digits_features_onnx", "digits_fused_onnx", "digits_model", "digits_onnx",
           "digits_test_images", "load_labeled_images", "save_tiny_onnx"]


def cache_dir() -> Path:
    path = Path(os.environ.get("EDGE_RESNET_TEST_CACHE") or ROOT / ".cache" / "test-fixtures")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock across processes (pytest-xdist workers, parallel runs)."""
    with open(cache_dir() / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _key(data: Dict[str, Any]) -> str:
    import torch

    blob = json.dumps({**data, "sdk": __version__, "torch": str(torch.__version__),
                       "fixture": 2}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_labeled_images(folder: "str | Path") -> List[Tuple[np.ndarray, int]]:
    """(uint8 RGB array, class index) for every image of a labeled folder, in path order."""
    data = ImageFolder(folder, labeled=True)
    return [(img, int(rec.label)) for rec, img in data.iter_images()
            if rec.label is not None]


def _loads(path: Path) -> bool:
    from edge_resnet.core import EdgeResnetError
    from edge_resnet.export.models import load_model

    try:
        load_model(str(path))
    except EdgeResnetError as exc:
        print(f"\n[fixtures] retraining: cached {path.name} is unusable ({exc})")
        return False
    return True


@pytest.fixture(scope="session")
def digits_dirs() -> Any:
    """``DigitsFolders`` (train_dir, test_dir, counts): 32x32 RGB PNG digits, 1438/359 split."""
    from edge_resnet.datasets.digits import write_digits_folder

    folder = cache_dir() / f"digits-{DIGITS_PARAMS['size']}-s{DIGITS_PARAMS['seed']}"
    with _locked(folder.name):
        return write_digits_folder(folder, **DIGITS_PARAMS)


@pytest.fixture(scope="session")
def digits_checkpoint(digits_dirs: Any) -> Path:
    """Edge-resnet checkpoint of a ResNet50 trained at 32x32 on digits/train (trained once)."""
    from edge_resnet.training.finetune import finetune

    key = _key({"recipe": DIGITS_RECIPE, "data": DIGITS_PARAMS})
    path = cache_dir() / f"digits-resnet50-{key}.pt"
    with _locked(path.name):
        if path.is_file() and not _loads(path):
            path.unlink()  # a stale or damaged cache entry: train again
        if not path.is_file():
            started = time.perf_counter()
            result = finetune(digits_dirs.train_dir, path, test_dir=digits_dirs.test_dir,
                              progress=False, **DIGITS_RECIPE)
            print(f"\n[fixtures] trained {path.name} in {time.perf_counter() - started:.0f}s: "
                  f"val {result.final_val_accuracy:.4f}, test {result.test_accuracy:.4f}")
    return path


@pytest.fixture(scope="session")
def digits_model(digits_checkpoint: Path) -> Any:
    """``LoadedModel`` of the digits checkpoint (eval mode). Do not modify it in place."""
    from edge_resnet.export.models import load_model

    return load_model(str(digits_checkpoint))


def _export_cached(checkpoint: Path, name: str, **kwargs: Any) -> Path:
    """Export the checkpoint once per variant, cached beside it (keyed by its file name)."""
    from edge_resnet.export.models import load_model
    from edge_resnet.export.onnx_export import export_onnx

    out = cache_dir() / f"{checkpoint.stem}-{name}.onnx"
    with _locked(out.name):
        if not out.is_file():
            loaded = load_model(str(checkpoint))  # a private copy: export folds BatchNorm
            export_onnx(loaded.model, loaded.spec, out, weights_sha256=loaded.weights_sha256,
                        source=str(checkpoint), **kwargs)
    return out


@pytest.fixture(scope="session")
def digits_onnx(digits_checkpoint: Path) -> Path:
    """FP32 ONNX (float NCHW input, no fused preprocessing) of the digits model."""
    return _export_cached(digits_checkpoint, "fp32")


@pytest.fixture(scope="session")
def digits_features_onnx(digits_checkpoint: Path) -> Path:
    """Digits ONNX with the pooled 2048-d ``features`` output (for galleries)."""
    return _export_cached(digits_checkpoint, "features", with_features=True)


@pytest.fixture(scope="session")
def digits_fused_onnx(digits_checkpoint: Path) -> Path:
    """Digits ONNX with preprocessing fused in-graph (uint8 BGR NHWC input)."""
    return _export_cached(digits_checkpoint, "fused-bgr", fuse_preprocessing=True,
                          input_color_order="BGR")


@pytest.fixture(scope="session")
def digits_test_images(digits_dirs: Any) -> List[Tuple[np.ndarray, int]]:
    """All 359 digits/test images as (uint8 RGB 32x32x3 array, class index)."""
    return load_labeled_images(digits_dirs.test_dir)


@pytest.fixture()
def empty_hub(tmp_path: Path) -> Iterator[Path]:
    """Point torch's hub cache at an empty folder (restored afterwards): export and training
    tests prove the offline error for ImageNet weights without touching the user's cache."""
    import torch

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def save_tiny_onnx(path: Path, graph: Any, spec: Any, extra: Optional[Dict[str, str]] = None
                   ) -> Path:
    """Save a hand-built ONNX ``graph`` (opset 17, IR 8) carrying ``spec`` (and ``extra``
    metadata) the way export writes it: the millisecond models of backend and bundle tests."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {**spec.to_metadata(), **(extra or {})}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
