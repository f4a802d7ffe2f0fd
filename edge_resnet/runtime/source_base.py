"""What a capture source is: the user's options, a parsed URI, and the :class:`VideoSource`
interface every implementation follows (``open``/``read``/``skip``/``probe``/``rewind``/
``close``), so the capture loop and the pipeline depend on this module only.

The implementations are :mod:`edge_resnet.runtime.cvsource` (OpenCV: cameras, streams, video
files) and :mod:`edge_resnet.runtime.sources` (URI dispatch, image folders), which re-exports
these names. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge_resnet.runtime.events import redact

__all__ = ["SourceOptions", "SourceURI", "VideoSource"]


@dataclass(frozen=True)
class SourceOptions:
    """What the user asked of a source: capture size/rate (cameras), looping and pacing (files)."""

    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    loop: int = 0            # files: extra passes; -1 loops forever
    realtime: bool = False   # files: pace at the file's rate and drop like a live source
    flip: int = 0            # csi: nvvidconv flip-method


@dataclass(frozen=True)
class SourceURI:
    """A parsed source URI: ``kind`` picks the implementation, ``location`` is what it opens."""

    uri: str
    kind: str      # csi | v4l2 | rtsp | http | file | images | gst
    location: str

    @property
    def live(self) -> bool:
        return self.kind not in ("file", "images")


class VideoSource(ABC):
    """Base of the sources: ``open`` (raises :class:`SourceError`), ``read`` (None = no frame)."""

    def __init__(self, uri: SourceURI, options: SourceOptions) -> None:
        self.uri = uri
        self.options = options
        self.live = uri.live
        self.frame_rate: Optional[float] = None
        self.frame_count: Optional[int] = None
        # the file the last frame came from (image folders), for review events
        self.last_path: Optional[str] = None

    @abstractmethod
    def open(self) -> None:
        ...

    @abstractmethod
    def read(self) -> Optional[np.ndarray]:
        ...

    def skip(self) -> bool:
        """Step over a frame that could not be decoded; False when the source cannot."""
        return False

    def probe(self) -> Optional[bool]:
        """Cheap reachability check while reconnecting: True/False, or None if unknown."""
        return None

    def rewind(self) -> bool:
        """Go back to the first frame (for --loop); False when the source cannot."""
        self.close()
        self.open()
        return True

    @abstractmethod
    def close(self) -> None:
        ...

    def describe(self) -> str:
        """The URI with credentials redacted: safe for logs, events and metrics."""
        return redact(self.uri.uri)
