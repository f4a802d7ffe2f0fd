"""The gallery file: every field validated, a content hash, an optional fleet signature.

A gallery decides who is let through, so a file that was damaged, hand-edited or built for
another network must not load. ``validate`` checks each field (unit-norm finite vectors of one
shape, one NFC-normalised unique name per vector, counts, a threshold in [-1, 1]); the content
hash covers vectors + names + counts + threshold (and how it was derived) + the model
fingerprint, so copying a fingerprint onto altered vectors breaks the hash. The hash only
detects accidents and careless edits (anyone can recompute it); a signature with the fleet key
(the bundles' ECDSA P-256 identity, :mod:`edge_resnet.bundle.signing`) is what stops a forger,
and it is checked whenever a certificate is given. Device side: Python 3.8, numpy only.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.core import InputError, ModelError

__all__ = ["FORMAT", "GalleryFileError", "NORM_TOLERANCE", "check_names", "check_signature",
           "check_vectors", "content_digest", "normalize_name", "read_arrays", "signed_message",
           "validate"]

FORMAT = "edge-resnet-gallery/2"
# |norm - 1| allowed for a stored vector: float32 rounding is ~1e-7, a rescaled vector is far off.
NORM_TOLERANCE = 1e-3
MAX_NAME_LENGTH = 200
RESERVED_NAMES = ("unknown",)
_KEYS = ("format", "names", "embeddings", "counts", "fingerprint", "threshold",
         "threshold_info", "content_sha256", "signature")


class GalleryFileError(ModelError):
    """A gallery file is corrupt, truncated, inconsistent, altered or not signed as required."""


def normalize_name(name: str) -> str:
    """The stored form of an identity name: Unicode NFC (``é`` typed or decomposed is one name)."""
    return unicodedata.normalize("NFC", name)


def check_names(names: Sequence[str], where: str) -> List[str]:
    """Refuse empty, control-character, reserved, non-NFC or duplicate names (after NFC)."""
    out: List[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise GalleryFileError(f"{where}: identity names must be non-empty text, got {name!r}")
        if len(name) > MAX_NAME_LENGTH or any(unicodedata.category(c)[0] == "C" for c in name):
            raise GalleryFileError(f"{where}: identity name {name!r} is longer than "
                                   f"{MAX_NAME_LENGTH} characters or holds control characters")
        if name in RESERVED_NAMES:
            raise GalleryFileError(f"{where}: {name!r} is reserved for rejected faces; rename "
                                   "that identity")
        if normalize_name(name) != name:
            raise GalleryFileError(f"{where}: identity name {name!r} is not NFC-normalised; "
                                   "re-enrol with `edge-resnet gallery enroll`")
        out.append(name)
    if len(set(out)) != len(out):
        dupes = sorted({n for n in out if out.count(n) > 1})
        raise GalleryFileError(f"{where}: duplicate identity names {dupes[:5]}; each identity "
                               "must appear once (merge their images into one folder)")
    return out


def check_vectors(embeddings: Any, count: int, where: str) -> np.ndarray:
    """``count`` x D float32 rows, finite, each of unit L2 norm (within ``NORM_TOLERANCE``)."""
    if not isinstance(embeddings, np.ndarray) or embeddings.dtype != np.float32:
        raise GalleryFileError(f"{where}: embeddings must be a float32 array, got "
                               f"{getattr(embeddings, 'dtype', type(embeddings).__name__)}")
    if embeddings.ndim != 2 or embeddings.shape[1] < 1:
        raise GalleryFileError(f"{where}: embeddings must be a 2-D array (identities x "
                               f"dimensions), got shape {embeddings.shape}")
    if embeddings.shape[0] != count:
        raise GalleryFileError(f"{where}: {embeddings.shape[0]} embeddings for {count} names; "
                               "there must be exactly one vector per name")
    if not np.isfinite(embeddings).all():
        bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
        raise GalleryFileError(f"{where}: {bad} embedding(s) hold NaN or infinity; re-enrol")
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        raise GalleryFileError(f"{where}: {int(off.sum())} embedding(s) are not unit vectors "
                               f"(norms {np.round(norms[off][:3], 4).tolist()}); a scaled vector "
                               "would accept strangers. Re-enrol")
    return embeddings


def validate(names: Sequence[str], embeddings: Any, counts: Sequence[int], fingerprint: str,
             threshold: float, where: str) -> None:
    """Every field of a gallery, in the order a reader would trip over them."""
    check_names(names, where)
    if len(names) < 1:
        raise GalleryFileError(f"{where}: the gallery holds no identity")
    check_vectors(embeddings, len(names), where)
    if len(counts) != len(names) or any(int(c) < 1 for c in counts):
        raise GalleryFileError(f"{where}: need one image count >= 1 per identity, got "
                               f"{len(counts)} counts for {len(names)} names")
    if not isinstance(fingerprint, str) or len(fingerprint) != 16 or \
            any(c not in "0123456789abcdef" for c in fingerprint):
        raise GalleryFileError(f"{where}: the model fingerprint {fingerprint!r} is not 16 hex "
                               "digits")
    if not (isinstance(threshold, float) and -1.0 <= threshold <= 1.0):
        raise GalleryFileError(f"{where}: the threshold {threshold!r} is not a cosine "
                               "similarity in [-1, 1]")


def content_digest(names: Sequence[str], embeddings: np.ndarray, counts: Sequence[int],
                   fingerprint: str, threshold: float, threshold_info: Dict[str, Any]) -> str:
    """SHA-256 over a canonical encoding of everything that decides a match."""
    header = json.dumps({"format": FORMAT, "names": list(names), "counts": [int(c) for c in counts],
                         "fingerprint": fingerprint, "threshold": float(threshold),
                         "threshold_info": threshold_info, "shape": list(embeddings.shape)},
                        sort_keys=True, ensure_ascii=True, allow_nan=False)
    digest = hashlib.sha256(header.encode("ascii"))
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())
    return digest.hexdigest()


def signed_message(content_sha256: str) -> bytes:
    """What the fleet key signs: the format and the content hash (domain-separated)."""
    return f"{FORMAT}\n{content_sha256}\n".encode("ascii")


def _scalar_text(data: Any, key: str, where: str) -> str:
    value = data[key]
    if value.dtype.kind != "U" or value.ndim != 0:
        raise GalleryFileError(f"{where}: field {key!r} must be a text scalar")
    return str(value)


def read_arrays(path: Path) -> Dict[str, Any]:
    """The raw fields of a gallery file, typed; any damage becomes one :class:`GalleryFileError`."""
    if not path.is_file():
        raise InputError(f"gallery file {path} does not exist; create it with "
                         "`edge-resnet gallery enroll`")
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if "format" in missing or _scalar_text(data, "format", where) != FORMAT:
                raise GalleryFileError(f"{where} is not an {FORMAT} file (an older gallery or "
                                       "another file); re-enrol with `edge-resnet gallery enroll`")
            if missing:
                raise GalleryFileError(f"{where}: gallery fields {missing} are missing; re-enrol")
            names = data["names"]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise GalleryFileError(f"{where}: names must be a 1-D text array")
            counts, threshold, signature = data["counts"], data["threshold"], data["signature"]
            if counts.dtype.kind not in "iu" or counts.ndim != 1 or threshold.ndim != 0 or \
                    threshold.dtype.kind != "f" or signature.dtype != np.uint8:
                raise GalleryFileError(f"{where}: counts, threshold or signature have the wrong "
                                       "type")
            return {"names": [str(n) for n in names], "embeddings": data["embeddings"],
                    "counts": [int(c) for c in counts], "threshold": float(threshold),
                    "fingerprint": _scalar_text(data, "fingerprint", where),
                    "threshold_info": json.loads(_scalar_text(data, "threshold_info", where)),
                    "content_sha256": _scalar_text(data, "content_sha256", where),
                    "signature": bytes(signature.tobytes())}
    except GalleryFileError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise GalleryFileError(f"{where} is not a readable edge-resnet gallery (corrupt or "
                               f"truncated: {type(exc).__name__}: {exc}); re-enrol or copy it "
                               "again") from None


def check_signature(signature: bytes, content_sha256: str, certificate: Optional[Any],
                    where: str) -> None:
    """With a certificate, the gallery must carry a valid signature over its content hash."""
    if certificate is None:
        return
    if not signature:
        raise GalleryFileError(f"{where} is not signed but a fleet certificate was given; enrol "
                               "with sign_key (the fleet key) or leave out the certificate")
    from edge_resnet.bundle.signing import verify_bytes

    verify_bytes(certificate, signed_message(content_sha256), signature, f"gallery {where}")
