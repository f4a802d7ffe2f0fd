"""The JSONL event stream an operator can trust: stamped, numbered, one writer at a time.

Every event (``run_start``, ``result``, ``source_down``, ``source_up``, ``run_end``) carries the
same envelope: schema version, run id, a per-run sequence number (a gap means a lost line),
camera id, source (credentials redacted), model name/version/sha256, and wall-clock plus
monotonic timestamps (wall clocks jump with NTP; monotonic ones order events within a run).
The capture thread (source status) and the output thread (results) both publish through one
:class:`EventLog`, whose lock makes numbering and writing one step. Device side: Python 3.8.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol

__all__ = ["SCHEMA_VERSION", "EventLog", "EventSink", "ModelInfo", "redact", "file_sha256"]

SCHEMA_VERSION = 2

# scheme://user:password@host → scheme://user:***@host (also a bare token before '@')
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*)"
                          r"(?::(?P<password>[^/@\s]*))?@")


def redact(text: str) -> str:
    """``text`` with the password (or token) of every ``scheme://user:pass@`` replaced by ***."""
    def _sub(m: "re.Match[str]") -> str:
        if m.group("password") is None:  # rtsp://token@host: the user part is the secret
            return f"{m.group('scheme')}***@"
        return f"{m.group('scheme')}{m.group('user')}:***@"
    return _CREDENTIALS.sub(_sub, text)


def file_sha256(path: "str | Path") -> str:
    """SHA-256 of a file, streamed (:func:`edge_resnet.fingerprints.sha256_file`)."""
    from edge_resnet.fingerprints import sha256_file

    return sha256_file(path).sha256


@dataclass(frozen=True)
class ModelInfo:
    """What produced the results: name, version (None when nobody said) and file hash."""

    name: str
    version: Optional[str]
    sha256: str

    @classmethod
    def from_file(cls, path: "str | Path", name: Optional[str] = None,
                  version: Optional[str] = None) -> "ModelInfo":
        p = Path(path)
        sha = file_sha256(p) if p.is_file() else ""
        return cls(name or p.name, version, sha)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


class EventSink(Protocol):
    def write_event(self, data: Dict[str, Any]) -> None:
        ...


class EventLog:
    """Stamps events with the run's envelope and writes them to every sink, in ``seq`` order."""

    def __init__(self, source: str, model: ModelInfo, camera_id: Optional[str] = None,
                 run_id: Optional[str] = None) -> None:
        self.source = redact(source)
        self.model = model
        self.camera_id = camera_id
        self.run_id = run_id or uuid.uuid4().hex
        self.sinks: List[EventSink] = []
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, kind: str, fields: Dict[str, Any], wall: Optional[float] = None,
             monotonic: Optional[float] = None) -> Dict[str, Any]:
        """Number, stamp and write one event; returns it. ``wall``/``monotonic`` default to
        now (results pass their capture times)."""
        with self._lock:
            self._seq += 1
            data: Dict[str, Any] = {
                "schema": SCHEMA_VERSION, "type": kind, "run_id": self.run_id, "seq": self._seq,
                "camera_id": self.camera_id, "source": self.source, "model": self.model.to_dict(),
                "timestamp": round(time.time() if wall is None else wall, 6),
                "monotonic": round(time.monotonic() if monotonic is None else monotonic, 6),
            }
            data.update(fields)
            for sink in self.sinks:
                sink.write_event(data)
            return data

    def run_start(self, details: Dict[str, Any]) -> Dict[str, Any]:
        """The first event of a run: a file appended to by several runs shows where each
        begins (and with what), never a silent continuation."""
        return self.emit("run_start", {"pid": os.getpid(), "host": socket.gethostname(),
                                       **details})
