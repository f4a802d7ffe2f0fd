"""Content fingerprints shared by the engine cache and fleet bundles.

One definition of "the same artifact": the sha256 of its bytes, computed by streaming in fixed
chunks so a 100 MB model never sits in memory at once, and, for JSON-able records (model specs,
build options, manifests), the sha256 of a canonical JSON encoding (sorted keys, no whitespace),
so two equal records fingerprint equally whatever order their keys were built in.

Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional

__all__ = ["CHUNK_SIZE", "FileDigest", "canonical_json", "copy_hashed", "sha256_bytes",
           "onnx_graph_sha256", "sha256_file", "sha256_json", "sha256_stream"]

# 1 MiB: large enough that hashing runs at disk speed, small enough for any device.
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """The sha256 (lowercase hex) and byte size of one stream."""

    sha256: str
    size: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: IO[bytes], limit: Optional[int] = None) -> FileDigest:
    """Hash a binary stream to its end in CHUNK_SIZE pieces (memory stays bounded).

    With ``limit``, reading stops after ``limit + 1`` bytes so a caller that expects at most
    ``limit`` bytes can tell an over-long stream (``size > limit``) without reading all of it.
    """
    return copy_hashed(stream, None, limit)


def copy_hashed(stream: IO[bytes], sink: Optional[Callable[[bytes], Any]],
                limit: Optional[int] = None) -> FileDigest:
    """Read ``stream`` once, hashing each chunk and handing it to ``sink`` (a file's ``write``).

    This is how a verified copy is made without reading the source twice. ``limit`` as in
    :func:`sha256_stream`; the over-long chunk is not handed to ``sink``.
    """
    digest = hashlib.sha256()
    size = 0
    while True:
        want = CHUNK_SIZE if limit is None else min(CHUNK_SIZE, limit + 1 - size)
        if want <= 0:
            break
        chunk = stream.read(want)
        if not chunk:
            break
        size += len(chunk)
        if limit is not None and size > limit:
            break
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return FileDigest(digest.hexdigest(), size)


def sha256_file(path: "str | Path") -> FileDigest:
    """Streamed sha256 and size of a file (ONNX models, engines, payloads)."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


def canonical_json(record: Any) -> bytes:
    """The one byte encoding of a JSON-able record that fingerprints are taken over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def sha256_json(record: Any) -> str:
    """Fingerprint of a JSON-able record (a model spec's metadata, build options)."""
    return sha256_bytes(canonical_json(record))


def onnx_graph_sha256(model: Any) -> str:
    """Fingerprint of an ONNX model's graph (structure and weights, not ``metadata_props``):
    the same network whatever provenance or spec metadata it carries. Calibration statistics,
    FP16 resume checks and calibrated artifacts' ``source_sha256`` use it. ``model`` is an
    ``onnx.ModelProto`` (not imported here: the module stays standard library)."""
    return sha256_bytes(model.graph.SerializeToString(deterministic=True))
