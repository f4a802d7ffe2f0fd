"""Reading images and labeled/unlabeled image folders, robust to the files found in the field.

Readable oddities are converted (grayscale, RGBA, palette, 16-bit); unreadable files (corrupt,
zero bytes, not an image) are skipped and counted so that reports can say how many were lost.
This is the SDK's one decode layer for stills: the folder walk, the image extensions and the
decode iterators (:func:`iter_decoded`, :func:`decoded_chunks`) that finetune, calibration
readers, evaluation and the runtime's folder source adapt (video frames:
:func:`edge_resnet.runtime.sources.video_frames`). Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_resnet.core import DataError, InputError

__all__ = ["ImageFolder", "ImageRecord", "SkipCounter", "chunked", "decoded_chunks",
           "image_files", "is_image_file", "iter_decoded", "prefetched", "read_image",
           "read_label_map", "IMAGE_EXTENSIONS"]

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


_T = TypeVar("_T")


def _files_under(root: Path) -> List[Path]:
    """Every visible file under ``root``: the SDK's one folder walk (sorted names, depth first,
    hidden files and folders left out), so every stage sees a folder in the same order."""
    files: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def is_image_file(path: Path) -> bool:
    """A visible file named like an image (one of :data:`IMAGE_EXTENSIONS`)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def image_files(root: "str | Path") -> List[Path]:
    """The image files under ``root`` in the folder walk's order (for image sequences, which
    take only files named like images, unlike :class:`ImageFolder`, which counts the rest)."""
    return [p for p in _files_under(Path(root)) if is_image_file(p)]


def _decode_one(record: ImageRecord, transform: Optional[Callable[[np.ndarray], np.ndarray]]
                ) -> "np.ndarray | DataError":
    try:
        image = read_image(record.path)
        return image if transform is None else transform(image)
    except DataError as exc:
        return exc


def iter_decoded(records: Sequence[ImageRecord], skips: SkipCounter,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 workers: int = 0) -> Iterator[Tuple[ImageRecord, np.ndarray]]:
    """Yield (record, RGB uint8 image) for the readable files in order; count the rest in
    ``skips`` (path -> reason) instead of failing, so one bad file never stops a pass.

    ``transform`` (e.g. the resize) runs on each image where it is decoded; ``workers`` > 1
    decodes in that many threads (Pillow releases the GIL while decoding and resizing), still
    yielding in record order.
    """
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            futures = [pool.submit(_decode_one, r, transform) for r in records]
            try:
                yield from _kept(zip(records, (f.result() for f in futures)), skips)
            finally:
                for future in futures:  # stopped early: do not decode the rest
                    future.cancel()
        return
    yield from _kept(((r, _decode_one(r, transform)) for r in records), skips)


def _kept(results: Iterable[Tuple[ImageRecord, "np.ndarray | DataError"]], skips: SkipCounter
          ) -> Iterator[Tuple[ImageRecord, np.ndarray]]:
    for record, result in results:
        if isinstance(result, DataError):
            skips.add(record.path, str(result))
        else:
            yield record, result


def chunked(items: Iterable[_T], size: int) -> Iterator[List[_T]]:
    """Lists of ``size`` consecutive items (the last one shorter): batches of any stream."""
    if size < 1:
        raise InputError(f"batch_size must be >= 1, got {size}")
    chunk: List[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def prefetched(chunks: Iterator[_T]) -> Iterator[_T]:
    """Produce the next item in a worker thread while the caller works on the current one
    (Pillow's decoders and the inference runtimes release the GIL), so a fast accelerator is
    not left waiting for the JPEG decoder."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead") as pool:
        future = pool.submit(next, chunks, None)
        while True:
            item = future.result()
            if item is None:
                return
            future = pool.submit(next, chunks, None)
            yield item


def decoded_chunks(records: Sequence[ImageRecord], size: int, skips: SkipCounter,
                   prefetch: bool = False) -> Iterator[List[Tuple[ImageRecord, np.ndarray]]]:
    """:func:`iter_decoded` in chunks of ``size`` readable images (each decoded once), the
    next chunk decoded ahead in a thread when ``prefetch``."""
    chunks = chunked(iter_decoded(records, skips), size)
    return prefetched(chunks) if prefetch else chunks


_WORDNET_ID = re.compile(r"n[0-9]{8}")
_INDEX = re.compile(r"-?[0-9]+")


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:10]) + ("..." if len(names) > 10 else "")


def _class_index(labels: Sequence[str], label_ids: Optional[Sequence[str]],
                 where: str) -> Dict[str, int]:
    """Class name or class ID -> class index; a key naming two classes is refused."""
    index = {name: i for i, name in enumerate(labels)}
    for i, key in enumerate(label_ids or ()):
        if index.setdefault(key, i) != i:
            raise DataError(f"{where}: {key!r} is the label of class {index[key]} and the ID of "
                            f"class {i}; rename the label so class names and IDs differ")
    return index


def read_label_map(path: "str | Path", root: "str | Path", labels: Sequence[str],
                   label_ids: Optional[Sequence[str]] = None) -> List[ImageRecord]:
    """Records from a label map such as MLPerf's ImageNet ``val_map.txt``.

    Each line is ``<image file> <class>``: the file relative to ``root`` (flat or in
    subfolders) and the class as an index into ``labels`` (``ILSVRC2012_val_00000001.JPEG 65``),
    a label or a class ID (``... n01751748``); a number is always an index. The file name
    ends at the first blank (labels such as ``sea snake`` may contain blanks), or at a tab when
    the line has one (for file names with blanks). Blank lines and ``#`` comments are ignored;
    only the listed files are used. A malformed line, an unknown class, an index out of range,
    a file listed twice or listed files missing under ``root`` raise :class:`DataError` naming
    the line.
    """
    path, root = Path(path), Path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path} ({exc}); give a text file of "
                         "'<image file> <class index>' lines") from exc
    index = _class_index(labels, label_ids, str(path))
    records: List[ImageRecord] = []
    seen: Dict[str, int] = {}  # file as listed -> line number
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t", 1)] if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{path}:{number}: expected '<image file> <class index>', "
                            f"got {line!r}")
        name, token = parts
        if name in seen:
            raise DataError(f"{path}:{number}: {name} is listed twice (also line {seen[name]})")
        seen[name] = number
        records.append(ImageRecord(root / name, _map_class(token, index, len(labels),
                                                           f"{path}:{number}")))
    if not records:
        raise DataError(f"labels file {path} lists no images")
    _check_listed_files(seen, path, root)
    return records


def _map_class(token: str, index: Dict[str, int], count: int, where: str) -> int:
    if _INDEX.fullmatch(token):
        value = int(token)
        if not 0 <= value < count:
            raise DataError(f"{where}: class index {value} is out of range: the model has "
                            f"{count} classes (0..{count - 1}); is the map for this model?")
        return value
    if token in index:
        return index[token]
    raise DataError(f"{where}: class {token!r} is neither a class index (0..{count - 1}) nor "
                    "one of the model's labels or class IDs")


def _check_listed_files(lines: Dict[str, int], path: Path, root: Path) -> None:
    """Every listed file must exist: a wrong DATA_DIR should fail at once, not skip them all."""
    missing = [(number, name) for name, number in lines.items() if not (root / name).is_file()]
    if missing:
        number, name = missing[0]
        raise DataError(
            f"{path}: {len(missing)} of {len(lines)} listed files are not in {root} "
            f"(line {number}: {name}); point DATA_DIR at the folder the labels file lists")


class ImageFolder:
    """A folder of images: labeled (one subfolder per class, or a label map) or unlabeled.

    Class names are the sorted subfolder names, as torchvision's ``ImageFolder`` does, unless
    ``labels`` is given: then subfolders are matched to those labels by name, or by class ID
    when ``label_ids`` are given (ImageNet's synset folders ``n01440764/...`` for a model whose
    labels are class names), so evaluation of a model uses the model's class indices, and a
    subfolder that is neither is an error. With ``labels_file`` the labels come from a label
    map over the folder instead (see :func:`read_label_map`), and only the listed files are used.
    Every regular file is listed; unreadable ones are skipped when iterated and counted.
    """

    def __init__(self, root: "str | Path", labels: Optional[Sequence[str]] = None,
                 labeled: Optional[bool] = None, label_ids: Optional[Sequence[str]] = None,
                 labels_file: "Optional[str | Path]" = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder {self.root} does not exist or is not a directory")
        self.records: List[ImageRecord] = []
        if labels_file is not None:
            if labeled is False or not labels:
                raise InputError("a labels file gives every image a class of the model: it needs "
                                 "the model's labels and cannot be used with unlabeled data")
            self.labeled = True
            self.classes: Tuple[str, ...] = tuple(labels)
            self.records = read_label_map(labels_file, self.root, labels, label_ids)
            self.skips = SkipCounter()
            return
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if labeled is None:
            labeled = bool(subdirs)
        self.labeled = labeled
        if labeled:
            self.classes = self._labeled_records(subdirs, labels, label_ids)
        else:
            self.classes = tuple(labels) if labels else ()
            self.records = [ImageRecord(p, None) for p in _files_under(self.root)]
        if not self.records:
            raise DataError(f"image folder {self.root} contains no files")
        self.skips = SkipCounter()

    def _labeled_records(self, subdirs: List[Path], labels: Optional[Sequence[str]],
                         label_ids: Optional[Sequence[str]]) -> Tuple[str, ...]:
        classes = tuple(labels) if labels else tuple(d.name for d in subdirs)
        index = _class_index(classes, label_ids if labels else None, str(self.root))
        unknown = [d.name for d in subdirs if d.name not in index]
        if unknown:
            raise DataError(f"{self.root}: subfolders {unknown[:5]} are "
                            + self._known(classes, label_ids if labels else None, unknown))
        for d in subdirs:
            self.records.extend(ImageRecord(p, index[d.name]) for p in _files_under(d))
        return classes

    @staticmethod
    def _known(classes: Sequence[str], label_ids: Optional[Sequence[str]],
               unknown: Sequence[str]) -> str:
        """What subfolders may be named, for the error message."""
        if label_ids:
            return (f"neither among the model's labels ({_shown(classes)}) nor its class IDs "
                    f"({_shown(label_ids)}); is this data for this model?")
        hint = ""
        if all(_WORDNET_ID.fullmatch(name) for name in unknown):
            hint = ("; they look like WordNet IDs but the model carries no class IDs: export "
                    "ImageNet models with this edge-resnet version, or give a labels file")
        return f"not among the model's labels ({_shown(classes)}){hint}"

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
        return iter_decoded(self.records if records is None else records, self.skips)

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
