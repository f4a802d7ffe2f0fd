"""Reading a bundle file safely: signature first, then each payload once, streamed and hashed.

A bundle is a tar archive (plain or compressed; the reader streams it in one forward pass):
``manifest.json``, ``manifest.sig`` (ECDSA-SHA256 over the manifest bytes), then
``payload/<path>`` for every manifest entry. Nothing in a payload is trusted until the
signature over the manifest has verified with the fleet certificate, and every member is checked
before a byte of it is read: a regular file (no links, devices, directories, sparse files), a
name the signed manifest lists (so no absolute paths or ``..``), the size the manifest pins (so no
member can inflate beyond what was signed), and, for compressed bundles, an expansion ratio
limit against decompression bombs. Where Python has it (3.12, 3.11.4+, 3.8.17+ security
releases) the tarfile ``data`` filter judges each member too; the hand-written checks run
everywhere. Device side: Python 3.8, standard library + cryptography.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional

from edge_resnet.bundle.errors import BundleError
from edge_resnet.bundle.manifest import MAX_MANIFEST_BYTES, Manifest, Payload, parse_manifest
from edge_resnet.bundle.signing import verify_bytes
from edge_resnet.fingerprints import copy_hashed

__all__ = ["Limits", "MANIFEST_MEMBER", "SIGNATURE_MEMBER", "read_bundle"]

MANIFEST_MEMBER = "manifest.json"
SIGNATURE_MEMBER = "manifest.sig"
_MAX_SIGNATURE_BYTES = 1024

# Called with the parsed manifest before any payload is read (device checks, anti-downgrade).
ManifestCheck = Callable[[Manifest], None]
# Given a payload, return where its bytes go (a ``write`` callable) and a finisher run after
# its hash matched; ``None`` to only hash (verify).
Sink = Callable[[Payload], Any]


@dataclass(frozen=True)
class Limits:
    """Bomb limits: total bytes a bundle may expand to, and the compressed expansion ratio."""

    max_total_bytes: int = 16 << 30
    max_ratio: float = 200.0
    ratio_grace_bytes: int = 4 << 20


class _CountingReader:
    """Counts compressed bytes the tar stream consumed (for the expansion ratio)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


def _judge_member(member: tarfile.TarInfo, expected: Dict[str, Any], bundle: str) -> None:
    """Refuse a member before reading it: type, name and size against the signed manifest."""
    name = member.name
    kind = ("a symlink" if member.issym() else "a hard link" if member.islnk() else
            "a device" if member.isdev() else "a directory" if member.isdir() else
            "a sparse file" if member.issparse() else None if member.isreg() else "not a file")
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise BundleError(f"{bundle}: unsafe entry {name!r} (absolute path or '..'); refusing "
                          "the bundle")
    if kind is not None:
        raise BundleError(f"{bundle}: entry {name!r} is {kind}; bundles hold regular files "
                          "only; refusing the bundle")
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            data_filter(member, "/nonexistent-bundle-root")
        except tarfile.TarError as exc:  # FilterError subclasses
            raise BundleError(f"{bundle}: unsafe entry {name!r}: {exc}; refusing the bundle") \
                from None
    if name not in expected:
        raise BundleError(f"{bundle}: entry {name!r} is not in the signed manifest (or comes "
                          "twice / out of order); refusing the bundle")
    limit = expected[name]
    if member.size != limit:
        raise BundleError(f"{bundle}: entry {name!r} is {member.size} bytes but the manifest "
                          f"pins {limit}; refusing the bundle")


def _read_small(tar: Any, name: str, limit: int, bundle: str) -> bytes:
    member = tar.next()
    if member is None or member.name != name:
        raise BundleError(f"{bundle}: expected {name!r} as the next entry, found "
                          f"{None if member is None else member.name!r}; not a signed bundle")
    if not member.isreg() or member.size > limit:
        raise BundleError(f"{bundle}: {name} is not a regular file of at most {limit} bytes")
    fh = tar.extractfile(member)
    data = fh.read() if fh is not None else b""
    if len(data) != member.size:
        raise BundleError(f"{bundle} is truncated (in {name}); download it again")
    return bytes(data)


def _check_ratio(counter: _CountingReader, produced: int, limits: Limits, bundle: str) -> None:
    if produced > limits.ratio_grace_bytes and produced > limits.max_ratio * max(counter.count, 1):
        raise BundleError(f"{bundle}: expands more than {limits.max_ratio:.0f}x (decompression "
                          "bomb?); refusing the bundle")


def _read_payloads(tar: Any, manifest: Manifest, counter: _CountingReader, sink: Optional[Sink],
                   limits: Limits, bundle: str) -> None:
    expected = {p.member: p.size for p in manifest.payload}
    entries = {p.member: p for p in manifest.payload}
    produced = 0
    while expected:
        try:
            member = tar.next()
        except tarfile.TarError as exc:
            raise BundleError(f"{bundle} is damaged or truncated ({exc}); download it again") \
                from None
        if member is None:
            raise BundleError(f"{bundle} is truncated: {len(expected)} payload file(s) missing "
                              f"({sorted(expected)[0]} ...); download it again")
        _judge_member(member, expected, bundle)
        payload = entries[member.name]
        del expected[member.name]
        produced += member.size
        if produced > limits.max_total_bytes:
            raise BundleError(f"{bundle}: payload exceeds {limits.max_total_bytes} bytes")
        target = sink(payload) if sink is not None else None
        fh = tar.extractfile(member)
        digest = copy_hashed(fh, None if target is None else target.write, member.size)
        _check_ratio(counter, produced, limits, bundle)
        if digest.size != payload.size:
            raise BundleError(f"{bundle} is truncated (in {payload.path}); download it again")
        if digest.sha256 != payload.sha256:
            raise BundleError(f"{bundle}: {payload.path} does not match its signed sha256 "
                              "(tampered or corrupted); refusing the bundle")
        if target is not None:
            target.finish()
    if tar.next() is not None:
        raise BundleError(f"{bundle}: extra entries after the payload; refusing the bundle")


def read_bundle(path: "str | Path", cert: Any, check: Optional[ManifestCheck] = None,
                sink: Optional[Sink] = None, limits: Limits = Limits()) -> Manifest:
    """Verify ``path`` against ``cert`` in one streamed pass and return its manifest.

    ``check`` runs on the verified manifest before any payload byte is read; ``sink`` receives
    each payload's bytes as they are hashed (staging) and ``finish()`` once the hash matched.
    Any refusal raises :class:`BundleError`.
    """
    bundle = str(path)
    if not Path(path).is_file():
        raise BundleError(f"bundle {bundle} does not exist or is not a file")
    if limits.max_total_bytes <= 0 or limits.max_ratio <= 1:
        raise BundleError("bundle limits must be positive (ratio > 1)")
    with open(path, "rb") as raw:
        counter = _CountingReader(raw)
        try:
            with tarfile.open(fileobj=counter, mode="r|*") as tar:  # type: ignore[call-overload]
                data = _read_small(tar, MANIFEST_MEMBER, MAX_MANIFEST_BYTES, bundle)
                signature = _read_small(tar, SIGNATURE_MEMBER, _MAX_SIGNATURE_BYTES, bundle)
                verify_bytes(cert, data, signature, bundle)
                manifest = replace(parse_manifest(data), signature=signature)
                if manifest.total_size > limits.max_total_bytes:
                    raise BundleError(f"{bundle}: payload of {manifest.total_size} bytes exceeds "
                                      f"the limit of {limits.max_total_bytes}")
                if check is not None:
                    check(manifest)
                _read_payloads(tar, manifest, counter, sink, limits, bundle)
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{bundle} is not a readable bundle or is truncated ({exc}); "
                              "download it again") from None
        except OSError as exc:
            if exc.errno is not None:
                raise  # a staging write failed (disk full, ...): the caller says where
            raise BundleError(f"{bundle} is damaged ({exc}); download it again") from None
        except ValueError as exc:
            raise BundleError(f"{bundle} is damaged ({exc}); download it again") from None
    return manifest
