"""Atomic artifact writes: a stage either leaves its complete output or nothing.

Writes go to a temporary file in the destination's folder and are renamed over it on success,
so an interrupted export/calibration never leaves a truncated model that a later stage trusts.
Device side too (bundle install): Python 3.8, standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edge_resnet.core import InputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "ensure_parent"]


def ensure_parent(path: "str | Path") -> Path:
    """Create the parent folder of ``path`` (the user named it) and return ``path`` as a Path."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask must set it,
    which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: "str | Path") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    final = ensure_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; artifacts should follow the umask like any file the user writes.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: "str | Path", data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: "str | Path", text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: "str | Path", data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
