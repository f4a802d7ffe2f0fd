"""scikit-learn's bundled handwritten digits as an image folder: real labeled data, offline.

The 1,797 8x8 handwritten digits ship inside scikit-learn, so the demo, the parity proof's
default images, the tests and a user on an air-gapped machine all get the same real data without
a download. This module sits on a low floor (core, io_utils, PIL, numpy; scikit-learn imported
when the images are made) so every stage can use it without importing another stage.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
from PIL import Image

from edge_resnet.core import InputError
from edge_resnet.io_utils import atomic_write_json

__all__ = ["DigitsFolders", "write_digits_folder"]

_MANIFEST = "digits.json"


@dataclass(frozen=True)
class DigitsFolders:
    """Where the digits were written and how many images each split holds per class."""

    train_dir: Path
    test_dir: Path
    counts: Dict[str, Dict[str, int]]  # {"train": {"0": n, ...}, "test": {...}}


def _digit_images(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(N x size x size x 3 uint8 RGB, N labels) upscaled bilinearly from the 8x8 originals."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(small), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(small):
        big = Image.fromarray(img, mode="L").resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(big.convert("RGB"))
    return out, digits.target.astype(np.int64)


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        mask[idx[: int(round(len(idx) * test_fraction))]] = True
    return mask


def _complete(out_dir: Path, params: Dict[str, Any]) -> Optional[DigitsFolders]:
    """The folders already written with these parameters, or None when absent/different."""
    manifest = out_dir / _MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if data.get("params") != params:
        raise InputError(
            f"{out_dir} already holds digits written with {data.get('params')}, not {params}; "
            "choose another output folder")
    for split, per_class in data["counts"].items():
        for cls, n in per_class.items():
            folder = out_dir / split / cls
            if not folder.is_dir() or len(list(folder.glob("*.png"))) != n:
                raise InputError(f"{folder} is incomplete or modified (expected {n} PNGs); "
                                 f"delete {out_dir} and run again")
    return DigitsFolders(out_dir / "train", out_dir / "test", data["counts"])


def write_digits_folder(out_dir: "str | Path", size: int = 32, test_fraction: float = 0.2,
                        seed: int = 0) -> DigitsFolders:
    """Write ``out_dir/{train,test}/<digit>/<index>.png`` (RGB, ``size`` x ``size``).

    Idempotent: a folder already complete with the same parameters is reused. Written into a
    temporary folder first and moved into place, so a crash never leaves half a dataset.
    """
    if size < 8:
        raise InputError(f"digit image size must be at least 8, got {size}")
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    out_dir = Path(out_dir)
    params = {"size": size, "test_fraction": test_fraction, "seed": seed}
    done = _complete(out_dir, params)
    if done is not None:
        return done
    for split in ("train", "test"):
        if (out_dir / split).exists():
            raise InputError(f"{out_dir / split} exists but is not a complete digits folder; "
                             "delete it or choose another output folder")
    images, labels = _digit_images(size)
    test_mask = _stratified_test_mask(labels, test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Dict[str, Dict[str, int]] = {"train": {}, "test": {}}
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=out_dir))
    try:
        for i, (img, label) in enumerate(zip(images, labels)):
            split = "test" if test_mask[i] else "train"
            folder = tmp / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, mode="RGB").save(folder / f"{i:04d}.png")
            counts[split][str(label)] = counts[split].get(str(label), 0) + 1
        for split in ("train", "test"):
            os.replace(tmp / split, out_dir / split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {s: dict(sorted(c.items())) for s, c in counts.items()}
    atomic_write_json(out_dir / _MANIFEST, {"params": params, "counts": counts,
                                            "source": "sklearn.datasets.load_digits"})
    return DigitsFolders(out_dir / "train", out_dir / "test", counts)
