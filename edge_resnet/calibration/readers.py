"""Calibration data readers: one protocol, three sources, batches already preprocessed.

Every reader yields float32 NCHW (or uint8 NHWC for fused-preprocessing graphs) batches made by
:func:`edge_resnet.preprocessing.preprocess_batch` with the model's spec, so calibration sees
exactly what inference will see. The readers only adapt the SDK's one decode layer (stills:
:mod:`edge_resnet.images`; video: :func:`edge_resnet.runtime.sources.video_frames`).
Unreadable files are skipped and counted in ``skips``; a source that yields no usable image at
all is a :class:`DataError`, never an empty calibration.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge_resnet.calibration.options import ReaderOptions
from edge_resnet.core import DataError, InputError, ModelSpec
from edge_resnet.images import (ImageFolder, ImageRecord, SkipCounter, chunked, decoded_chunks,
                                iter_decoded)
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.sources import VIDEO_EXTENSIONS, video_frame_count, video_frames

__all__ = ["CalibrationReader", "ImageFolderReader", "ListFileReader", "ReaderOptions",
           "VideoReader", "open_reader", "reader_names", "register_reader"]

LIST_EXTENSIONS = (".txt", ".lst", ".list")


class CalibrationReader(Protocol):
    """Iterable of preprocessed batches; ``images_used``/``skips`` are final after iteration."""

    spec: ModelSpec
    skips: SkipCounter
    images_used: int
    description: str

    def __iter__(self) -> Iterator[np.ndarray]:
        ...

    def expected_images(self) -> int:
        """Upper bound on the images this reader will yield (for progress bars)."""
        ...


class _BatchingReader(ABC):
    """Shared batching, counting and the no-usable-image check."""

    description = ""

    def __init__(self, spec: ModelSpec, options: ReaderOptions) -> None:
        self.spec = spec
        self.options = options
        self.skips = SkipCounter()
        self.images_used = 0

    @abstractmethod
    def _images(self) -> Iterator[np.ndarray]:
        """Yield uint8 HxWx3 RGB images; subclasses count their own skips."""
        ...

    @abstractmethod
    def expected_images(self) -> int:
        ...

    def __iter__(self) -> Iterator[np.ndarray]:
        self.images_used = 0
        for images in chunked(self._images(), self.options.batch_size):
            self.images_used += len(images)
            yield preprocess_batch(images, self.spec)
        if self.images_used == 0:
            raise DataError(
                f"{self.description}: no usable image ({self.skips.count} file(s) skipped as "
                "unreadable); point calibration at a folder, video or list of real images")


class ImageFolderReader(_BatchingReader):
    """Every file under ``root`` (recursively), a deterministic sample of ``num_images``."""

    def __init__(self, root: "str | Path", spec: ModelSpec, options: ReaderOptions) -> None:
        super().__init__(spec, options)
        self.folder = ImageFolder(root, labeled=False)
        self.records = self.folder.sample(options.num_images, seed=options.seed)
        self.skips = self.folder.skips
        self.description = f"image folder {self.folder.root}"

    def expected_images(self) -> int:
        return len(self.records)

    def _images(self) -> Iterator[np.ndarray]:
        for _, image in self.folder.iter_images(self.records):
            yield image


class ListFileReader(_BatchingReader):
    """A text file with one image path per line (relative paths are relative to the file)."""

    def __init__(self, list_path: "str | Path", spec: ModelSpec, options: ReaderOptions) -> None:
        super().__init__(spec, options)
        path = Path(list_path)
        if not path.is_file():
            raise InputError(f"list file {path} does not exist")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        paths = [Path(ln) if Path(ln).is_absolute() else path.parent / ln
                 for ln in lines if ln and not ln.startswith("#")]
        if not paths:
            raise DataError(f"list file {path} names no image paths")
        if options.num_images is not None and options.num_images < len(paths):
            picked = random.Random(options.seed).sample(range(len(paths)), options.num_images)
            paths = [paths[i] for i in sorted(picked)]
        self.records = [ImageRecord(p, None) for p in paths]
        self.description = f"list file {path}"

    def expected_images(self) -> int:
        return len(self.records)

    def _images(self) -> Iterator[np.ndarray]:
        for _, image in iter_decoded(self.records, self.skips):
            yield image


class VideoReader(_BatchingReader):
    """Frames of a video file, every ``frame_stride``-th, up to ``num_images``: the runtime's
    file source reads them (:func:`edge_resnet.runtime.sources.video_frames`)."""

    def __init__(self, video_path: "str | Path", spec: ModelSpec, options: ReaderOptions) -> None:
        super().__init__(spec, options)
        self.path = Path(video_path)
        if not self.path.is_file():
            raise InputError(f"video file {self.path} does not exist")
        self.description = f"video {self.path}"
        self._frame_count = video_frame_count(self.path)

    def expected_images(self) -> int:
        n = -(-self._frame_count // self.options.frame_stride) if self._frame_count else 0
        return min(n, self.options.num_images) if self.options.num_images else n

    def _images(self) -> Iterator[np.ndarray]:
        return video_frames(self.path, self.options.frame_stride, self.options.num_images)


ReaderFactory = Callable[["str | Path", ModelSpec, ReaderOptions], _BatchingReader]

_READERS: Dict[str, ReaderFactory] = {
    "folder": ImageFolderReader,
    "list": ListFileReader,
    "video": VideoReader,
}


def register_reader(name: str, factory: ReaderFactory) -> None:
    """Add a reader kind (timm-style registry); ``open_reader(kind=name)`` selects it."""
    _READERS[name] = factory


def reader_names() -> List[str]:
    return sorted(_READERS)


def _guess_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in LIST_EXTENSIONS:
        return "list"
    if not path.exists():
        raise InputError(f"calibration data {path} does not exist")
    raise InputError(f"cannot tell what {path} is: give a folder of images, a video "
                     f"({', '.join(VIDEO_EXTENSIONS)}) or a list file ({', '.join(LIST_EXTENSIONS)})")


def open_reader(source: "str | Path", spec: ModelSpec, options: Optional[ReaderOptions] = None,
                kind: Optional[str] = None) -> _BatchingReader:
    """A reader for ``source``: a folder, a video file or a list file (chosen by ``kind``,
    ``options.kind`` or guessed from the path)."""
    path = Path(source)
    options = options or ReaderOptions()
    kind = kind or options.kind or _guess_kind(path)
    factory = _READERS.get(kind)
    if factory is None:
        raise InputError(f"unknown reader {kind!r}; choose one of: {', '.join(reader_names())}")
    return factory(path, spec, options)


def records_reader(records: Sequence[ImageRecord], spec: ModelSpec, batch_size: int = 32,
                   skips: Optional[SkipCounter] = None
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(batch, labels) over labeled records (used by mixed mode); unreadable files are skipped
    and counted in ``skips`` when given (labels of unlabeled records are -1)."""
    for chunk in decoded_chunks(records, batch_size, SkipCounter() if skips is None else skips):
        labels = [-1 if record.label is None else record.label for record, _ in chunk]
        yield preprocess_batch([image for _, image in chunk], spec), np.asarray(labels)
