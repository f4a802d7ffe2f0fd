"""Calibration data readers: one protocol, three sources, batches already preprocessed.

Every reader yields float32 NCHW (or uint8 NHWC for fused-preprocessing graphs) batches made by
:func:`edge_resnet.preprocessing.preprocess_batch` with the model's spec, so calibration sees
exactly what inference will see. Unreadable files are skipped and counted in ``skips``; a source
that yields no usable image at all is a :class:`DataError`, never an empty calibration.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge_resnet.calibration.options import ReaderOptions
from edge_resnet.core import DataError, InputError, ModelSpec, SourceError
from edge_resnet.images import ImageFolder, ImageRecord, SkipCounter, read_image
from edge_resnet.preprocessing import preprocess_batch

__all__ = ["CalibrationReader", "ImageFolderReader", "ListFileReader", "ReaderOptions",
           "VideoReader", "open_reader", "reader_names", "register_reader"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
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
    def _images(self) -> Iterator[Tuple[np.ndarray, str]]:
        """Yield (uint8 HxWx3 image, colour order); subclasses count their own skips."""
        ...

    @abstractmethod
    def expected_images(self) -> int:
        ...

    def __iter__(self) -> Iterator[np.ndarray]:
        self.images_used = 0
        pending: List[np.ndarray] = []
        order = "RGB"
        for image, order in self._images():
            pending.append(image)
            if len(pending) == self.options.batch_size:
                yield self._flush(pending, order)
                pending = []
        if pending:
            yield self._flush(pending, order)
        if self.images_used == 0:
            raise DataError(
                f"{self.description}: no usable image ({self.skips.count} file(s) skipped as "
                "unreadable); point calibration at a folder, video or list of real images")

    def _flush(self, images: List[np.ndarray], order: str) -> np.ndarray:
        self.images_used += len(images)
        return preprocess_batch(images, self.spec, color_order=order)


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

    def _images(self) -> Iterator[Tuple[np.ndarray, str]]:
        for _, image in self.folder.iter_images(self.records):
            yield image, "RGB"


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
        self.paths = paths
        self.description = f"list file {path}"

    def expected_images(self) -> int:
        return len(self.paths)

    def _images(self) -> Iterator[Tuple[np.ndarray, str]]:
        for item in self.paths:
            try:
                yield read_image(item), "RGB"
            except DataError as exc:
                self.skips.add(item, str(exc))


class VideoReader(_BatchingReader):
    """Frames of a video file, every ``frame_stride``-th, up to ``num_images`` (OpenCV)."""

    def __init__(self, video_path: "str | Path", spec: ModelSpec, options: ReaderOptions) -> None:
        super().__init__(spec, options)
        self.path = Path(video_path)
        if not self.path.is_file():
            raise InputError(f"video file {self.path} does not exist")
        self.description = f"video {self.path}"
        self._frame_count = self._probe()

    def _open(self) -> "object":
        try:
            import cv2
        except ImportError as exc:
            from edge_resnet.core import DependencyError
            raise DependencyError("reading video needs OpenCV: pip install 'edge-resnet[video]'"
                                  ) from exc
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"{self.path}: OpenCV cannot open this video (codec or file broken)")
        return cap

    def _probe(self) -> int:
        import cv2
        cap = self._open()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # type: ignore[attr-defined]
        cap.release()  # type: ignore[attr-defined]
        return max(count, 0)

    def expected_images(self) -> int:
        n = -(-self._frame_count // self.options.frame_stride) if self._frame_count else 0
        return min(n, self.options.num_images) if self.options.num_images else n

    def _images(self) -> Iterator[Tuple[np.ndarray, str]]:
        cap = self._open()
        index = taken = 0
        limit = self.options.num_images
        try:
            while limit is None or taken < limit:
                ok, frame = cap.read()  # type: ignore[attr-defined]
                if not ok:
                    break
                if index % self.options.frame_stride == 0 and frame is not None and frame.ndim == 3:
                    taken += 1
                    yield frame, "BGR"
                index += 1
        finally:
            cap.release()  # type: ignore[attr-defined]


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


def records_reader(records: Sequence[ImageRecord], spec: ModelSpec,
                   batch_size: int = 32) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(batch, labels) over labeled records; unreadable files are skipped (used by mixed mode)."""
    images: List[np.ndarray] = []
    labels: List[int] = []
    for record in records:
        try:
            images.append(read_image(record.path))
        except DataError:
            continue
        labels.append(-1 if record.label is None else record.label)
        if len(images) == batch_size:
            yield preprocess_batch(images, spec), np.asarray(labels)
            images, labels = [], []
    if images:
        yield preprocess_batch(images, spec), np.asarray(labels)
