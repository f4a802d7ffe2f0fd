"""edge_resnet.fingerprints: streamed hashes equal hashlib's, bounded memory, canonical JSON."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

from edge_resnet.fingerprints import (CHUNK_SIZE, FileDigest, canonical_json, copy_hashed,
                                      sha256_file, sha256_json, sha256_stream)


def test_file_digest_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    for size in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 17):
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        assert sha256_file(path) == FileDigest(hashlib.sha256(data).hexdigest(), size)


def test_hashing_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        for _ in range(32):
            fh.write(os.urandom(CHUNK_SIZE))
    tracemalloc.start()
    try:
        digest = sha256_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.size == 32 * CHUNK_SIZE
    assert peak < 3 * CHUNK_SIZE, f"peak {peak} bytes while hashing a 32 MiB file"


def test_limit_stops_early_and_reports_overlong_stream() -> None:
    data = os.urandom(5000)
    short = sha256_stream(io.BytesIO(data), limit=5000)
    assert short == FileDigest(hashlib.sha256(data).hexdigest(), 5000)
    stream = io.BytesIO(data + b"x" * (10 * CHUNK_SIZE))
    over = sha256_stream(stream, limit=5000)
    assert over.size > 5000
    assert stream.tell() <= 5001, "read far past the limit"


def test_copy_hashed_writes_exactly_what_it_hashes() -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    out = io.BytesIO()
    digest = copy_hashed(io.BytesIO(data), out.write)
    assert out.getvalue() == data
    assert digest.sha256 == hashlib.sha256(data).hexdigest()


def test_json_fingerprint_ignores_key_order_but_not_values() -> None:
    a = {"labels": ["x", "y"], "resolution": 224, "nested": {"b": 1, "a": 2}}
    b = {"nested": {"a": 2, "b": 1}, "resolution": 224, "labels": ["x", "y"]}
    assert canonical_json(a) == canonical_json(b)
    assert sha256_json(a) == sha256_json(b)
    assert sha256_json(a) != sha256_json({**a, "resolution": 225})
    assert sha256_json(a) != sha256_json({**a, "labels": ["y", "x"]})
