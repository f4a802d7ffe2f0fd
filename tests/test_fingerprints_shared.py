"""One fingerprint implementation (edge_resnet.fingerprints) behind every file hash the SDK
records: run events' model sha256, export's weights sha256, the engine cache's model sha256.
Values are the plain sha256 of the bytes, as before (files on disk keep matching)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def test_every_file_hash_is_the_streamed_sha256(tmp_path: Path) -> None:
    from edge_resnet.export.models import file_sha256 as export_sha256
    from edge_resnet.fingerprints import CHUNK_SIZE, sha256_file
    from edge_resnet.runtime.events import file_sha256 as events_sha256

    data = np.random.default_rng(0).integers(0, 256, CHUNK_SIZE * 2 + 17, np.uint8).tobytes()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(blob).sha256 == events_sha256(blob) == export_sha256(blob) == want
    assert sha256_file(blob).size == len(data)
