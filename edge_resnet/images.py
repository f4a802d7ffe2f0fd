"""Reading images and labeled/unlabeled image folders, robust to the files found in the field.

Readable oddities are converted (grayscale, RGBA, palette, 16-bit); unreadable files (corrupt,
zero bytes, not an image) are skipped and counted so that reports can say how many were lost.
Used by finetune, calibration readers, evaluation and the runtime's folder source (device side:
Python 3.8, no torch).
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_resnet.core import DataError, InputError

__all__ = ["ImageFolder", "ImageRecord", "SkipCounter", "read_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                    ".gif")


@dataclass
class SkipCounter:
    """Files that could not be used, by reason, so reports can account for every file."""

    skipped: Dict[str, str] = field(default_factory=dict)

    def add(self, path: "str | Path", reason: str) -> None:
        self.skipped[str(path)] = reason

    @property
    def count(self) -> int:
        return len(self.skipped)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to uint8 HxWx3 RGB, scaling 16/32-bit data instead of clipping."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        data = np.asarray(img, dtype=np.float64)
        # PNG has no 32-bit integer images: mode "I" from a PNG (older Pillow) is 16-bit data.
        sixteen = img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG")
        peak = 65535.0 if sixteen or data.max(initial=0) > 255 else 255.0
        if img.mode == "F" and data.max(initial=0) <= 1.0:
            peak = 1.0
        gray = np.clip(np.round(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_image(path: "str | Path") -> np.ndarray:
    """Read one image file as uint8 HxWx3 RGB.

    Raises :class:`DataError` naming the file and the reason when it cannot be read.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                return _to_rgb_array(img)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: Optional[int]


def _files_under(root: Path) -> List[Path]:
    files: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


class ImageFolder:
    """A folder of images: labeled (one subfolder per class) or unlabeled (images anywhere).

    Class names are the sorted subfolder names, as torchvision's ``ImageFolder`` does, unless
    ``labels`` is given: then subfolders are matched to those labels by name, so evaluation of a
    model uses the model's class indices, and a subfolder with no such label is an error.
    Every regular file is listed; unreadable ones are skipped when iterated and counted.
    """

    def __init__(self, root: "str | Path", labels: Optional[Sequence[str]] = None,
                 labeled: Optional[bool] = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder {self.root} does not exist or is not a directory")
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if labeled is None:
            labeled = bool(subdirs)
        self.labeled = labeled
        self.records: List[ImageRecord] = []
        if labeled:
            self.classes: Tuple[str, ...] = self._labeled_records(subdirs, labels)
        else:
            self.classes = tuple(labels) if labels else ()
            self.records = [ImageRecord(p, None) for p in _files_under(self.root)]
        if not self.records:
            raise DataError(f"image folder {self.root} contains no files")
        self.skips = SkipCounter()

    def _labeled_records(self, subdirs: List[Path],
                         labels: Optional[Sequence[str]]) -> Tuple[str, ...]:
        classes = tuple(labels) if labels else tuple(d.name for d in subdirs)
        index = {name: i for i, name in enumerate(classes)}
        unknown = [d.name for d in subdirs if d.name not in index]
        if unknown:
            raise DataError(
                f"{self.root}: subfolders {unknown[:5]} are not among the model's labels "
                f"({', '.join(classes[:10])}{'...' if len(classes) > 10 else ''})")
        for d in subdirs:
            self.records.extend(ImageRecord(p, index[d.name]) for p in _files_under(d))
        return classes

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, num: Optional[int], seed: int = 0) -> List[ImageRecord]:
        """A deterministic random subset of ``num`` records (all, in order, when ``num`` is None)."""
        if num is None:
            return list(self.records)
        if num <= 0:
            raise InputError(f"number of images must be positive, got {num}")
        rng = random.Random(seed)
        picked = rng.sample(range(len(self.records)), min(num, len(self.records)))
        return [self.records[i] for i in sorted(picked)]

    def iter_images(self, records: Optional[Sequence[ImageRecord]] = None
                    ) -> Iterator[Tuple[ImageRecord, np.ndarray]]:
        """Yield (record, RGB uint8 image) for readable files; count the rest in ``skips``."""
        for record in self.records if records is None else records:
            try:
                yield record, read_image(record.path)
            except DataError as exc:
                self.skips.add(record.path, str(exc))

    def split(self, fraction: float, seed: int = 0) -> Tuple[List[ImageRecord], List[ImageRecord]]:
        """Stratified split: (train, held_out) with about ``fraction`` of each class held out."""
        if not 0.0 < fraction < 1.0:
            raise InputError(f"split fraction must be in (0, 1), got {fraction}")
        rng = random.Random(seed)
        by_class: Dict[Optional[int], List[ImageRecord]] = {}
        for record in self.records:
            by_class.setdefault(record.label, []).append(record)
        train: List[ImageRecord] = []
        held: List[ImageRecord] = []
        for key in sorted(by_class, key=lambda k: -1 if k is None else k):
            items = list(by_class[key])
            rng.shuffle(items)
            # at least one held out, and at least one left to train on, per class
            n_held = min(len(items) - 1, max(1, int(round(len(items) * fraction))))
            held.extend(items[:n_held])
            train.extend(items[n_held:])
        return sorted(train, key=lambda r: str(r.path)), sorted(held, key=lambda r: str(r.path))
