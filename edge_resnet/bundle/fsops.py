"""Durable filesystem steps for the slot installer, each one a point a power cut may hit.

Every mutation the installer makes goes through these functions: create, write, fsync, rename,
symlink, remove. Each first calls :func:`step`, which runs the test hook when one is set — the
power-loss test kills the process there (SIGKILL) and a full disk is simulated there (ENOSPC) —
and is a no-op otherwise. Renames and new entries are followed by an fsync of their directory,
because on Linux a rename is only durable once its directory is.
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Any, Callable, Optional

__all__ = ["StagedFile", "fsync_dir", "fsync_file", "make_dir", "remove_tree", "rename", "set_step_hook",
           "step", "swap_symlink", "write_json"]

_HOOK: Optional[Callable[[str], None]] = None


def set_step_hook(hook: Optional[Callable[[str], None]]) -> None:
    """Install (or clear) the function called with each step's name (tests only)."""
    global _HOOK
    _HOOK = hook


def step(name: str) -> None:
    if _HOOK is not None:
        _HOOK(name)


def fsync_dir(path: "str | Path") -> None:
    step(f"fsync-dir {Path(path).name}")
    fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: "str | Path") -> None:
    """Flush a file someone else wrote (the engine builder) to disk."""
    step(f"fsync {Path(path).name}")
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    step(f"mkdir {path.name}")
    path.mkdir()
    fsync_dir(path.parent)


def rename(src: Path, dst: Path) -> None:
    """Atomic rename, durable once it returns."""
    step(f"rename {src.name} {dst.name}")
    os.replace(str(src), str(dst))
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new link beside it, renamed over it."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        step(f"unlink {tmp.name}")
        tmp.unlink()
    step(f"symlink {tmp.name}")
    os.symlink(target, str(tmp))
    rename(tmp, link)


def remove_tree(path: Path) -> None:
    """Remove a directory (or file/link) for good; a half-removed tree is removed next time."""
    if not (path.exists() or path.is_symlink()):
        return
    step(f"remove {path.name}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(str(path))
    else:
        path.unlink()
    fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    """Replace a small JSON file atomically and durably (temp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    step(f"write {tmp.name}")
    with open(str(tmp), "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        step(f"fsync {tmp.name}")
        os.fsync(fh.fileno())
    rename(tmp, path)


class StagedFile:
    """A payload file being written into staging: each write a step, fsync'd on ``finish``."""

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            make_dir(path.parent)
        step(f"create {path.name}")
        self._path = path
        self._fh: IO[bytes] = open(str(path), "xb")

    def write(self, chunk: bytes) -> None:
        step(f"write {self._path.name}")
        self._fh.write(chunk)

    def finish(self) -> None:
        self._fh.flush()
        step(f"fsync {self._path.name}")
        os.fsync(self._fh.fileno())
        self._fh.close()

    def close(self) -> None:
        self._fh.close()
