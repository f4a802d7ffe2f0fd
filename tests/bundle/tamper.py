"""Helpers that rewrite a bundle the way an attacker or a broken link would, and disk snapshots."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge_resnet.bundle.signing import load_private_key, sign_bytes

Member = Tuple[tarfile.TarInfo, bytes]


def read_members(bundle: Path) -> List[Member]:
    with tarfile.open(bundle) as tar:
        out = []
        for info in tar.getmembers():
            fh = tar.extractfile(info) if info.isreg() else None
            out.append((info, fh.read() if fh is not None else b""))
    return out


def write_members(out: Path, members: List[Member], mode: str = "w") -> Path:
    with tarfile.open(out, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


def regular(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def rewrite(bundle: Path, out: Path, edit_manifest: Optional[Callable[[Dict[str, Any]], None]] = None,
            resign: Optional[Path] = None,
            edit_members: Optional[Callable[[List[Member]], List[Member]]] = None,
            mode: str = "w") -> Path:
    """Copy ``bundle`` to ``out`` with the manifest edited (re-signed with ``resign`` if given)."""
    members = read_members(bundle)
    if edit_manifest is not None:
        raw = json.loads(members[0][1])
        edit_manifest(raw)
        data = (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode()
        members[0] = (members[0][0], data)
        if resign is not None:
            members[1] = (members[1][0], sign_bytes(load_private_key(resign), data))
    if edit_members is not None:
        members = edit_members(members)
    return write_members(out, members, mode)


def pin(raw: Dict[str, Any], path: str, data: bytes) -> None:
    """Make the manifest pin ``data`` as the payload at ``path``."""
    for item in raw["payload"]:
        if item["path"] == path:
            item["size"], item["sha256"] = len(data), hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> Dict[str, Any]:
    """Every entry under ``root``: type, link target or content hash and mode (not dir mtimes)."""
    out: Dict[str, Any] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", path.stat().st_mode)
            else:
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(),
                            path.stat().st_mode, path.stat().st_mtime_ns)
    return out
