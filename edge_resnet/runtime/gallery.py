"""Embedding gallery for identification (face-ID style): enrol identities, match embeddings.

Each identity is the L2-normalised mean of its images' L2-normalised pooled features; a query
matches the identity of highest cosine similarity, or ``unknown`` below the threshold. The
threshold comes from the enrolment images for a target false accept rate
(:mod:`edge_resnet.faceid.threshold`: leave-one-out genuine scores, impostor scores between the
enrolled identities), so it works with one photo per person. The gallery file (.npz, see
:mod:`edge_resnet.faceid.galleryfile`) is validated field by field, hashed over everything that
decides a match together with the fingerprint of the model that made it, and optionally signed
with the fleet key, so a damaged, altered or foreign gallery is refused instead of matching.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.backends.base import Backend
from edge_resnet.core import DataError, InputError, ModelError, ModelSpec
from edge_resnet.faceid import galleryfile as gf
from edge_resnet.faceid.threshold import derive_threshold, unit_rows
from edge_resnet.images import ImageFolder, ImageRecord, SkipCounter, decoded_chunks
from edge_resnet.io_utils import atomic_path
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.postprocess import UNKNOWN

__all__ = ["Gallery", "Match", "embed_identities", "embed_images", "enroll", "group_by_identity",
           "l2_normalize", "load_gallery_for", "match_threshold", "spec_fingerprint"]

log = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return unit_rows(x)


def spec_fingerprint(spec: ModelSpec) -> str:
    """Identify the network behind embeddings: weights and input numerics, not the graph form.

    A fused-preprocessing or INT8 export of the same weights gives (nearly) the same features,
    so those fields are left out.
    """
    keys = ("arch", "weights_sha256", "resolution", "resize", "mean", "std", "labels")
    data = {k: getattr(spec, k) for k in keys}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Match:
    """The decision for one query: ``identity`` (or ``unknown``), and the best candidate with
    its similarity whatever the decision, so a reviewer sees how close a rejection was."""

    identity: str
    similarity: float
    best: str
    threshold: float = 0.0


@dataclass
class Gallery:
    """Enrolled identities: ``embeddings[i]`` (unit norm) belongs to ``names[i]``.

    Construction validates every field (:func:`edge_resnet.faceid.galleryfile.validate`), so an
    in-memory gallery is as trustworthy as a loaded one.
    """

    names: List[str]
    embeddings: np.ndarray
    fingerprint: str
    counts: List[int]
    suggested_threshold: float = 0.0
    threshold_info: Dict[str, Any] = field(default_factory=dict)
    signature: bytes = b""

    def __post_init__(self) -> None:
        self.suggested_threshold = float(self.suggested_threshold)
        gf.validate(self.names, self.embeddings, self.counts, self.fingerprint,
                    self.suggested_threshold, "gallery")

    @property
    def content_sha256(self) -> str:
        return gf.content_digest(self.names, self.embeddings, self.counts, self.fingerprint,
                                 self.suggested_threshold, self.threshold_info)

    def match(self, features: np.ndarray, threshold: float) -> List[Match]:
        """Best identity per row of ``features`` (N x D), ``unknown`` below ``threshold``."""
        if features.ndim != 2 or features.shape[1] != self.embeddings.shape[1]:
            raise ModelError(f"features of shape {features.shape} do not match the gallery's "
                             f"{self.embeddings.shape[1]}-d embeddings; use the model it was "
                             "enrolled with")
        sims = l2_normalize(features) @ self.embeddings.T
        best = sims.argmax(axis=1)
        out = []
        for row, j in zip(sims, best):
            sim = float(row[j])
            name = self.names[int(j)]
            out.append(Match(identity=name if sim >= threshold else UNKNOWN, similarity=sim,
                             best=name, threshold=threshold))
        return out

    def check_model(self, spec: ModelSpec) -> None:
        """Refuse a model whose fingerprint differs from the one the gallery was enrolled with."""
        found = spec_fingerprint(spec)
        if found != self.fingerprint:
            raise ModelError(f"the gallery was enrolled with another model (fingerprint "
                             f"{self.fingerprint}, this model {found}); re-run "
                             "`edge-resnet gallery enroll` with this model")

    def save(self, path: "str | Path", sign_key: "str | Path | None" = None) -> Path:
        """Write the gallery atomically, signed with the fleet key when ``sign_key`` is given."""
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"gallery file must end in .npz, got {path}")
        digest = self.content_sha256
        if sign_key is not None:
            from edge_resnet.bundle.signing import load_private_key, sign_bytes

            self.signature = sign_bytes(load_private_key(sign_key), gf.signed_message(digest))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, format=np.array(gf.FORMAT), names=np.array(self.names, dtype=str),
                         embeddings=self.embeddings, counts=np.array(self.counts, np.int64),
                         fingerprint=np.array(self.fingerprint),
                         threshold=np.array(self.suggested_threshold, np.float64),
                         threshold_info=np.array(json.dumps(self.threshold_info,
                                                            sort_keys=True)),
                         content_sha256=np.array(digest),
                         signature=np.frombuffer(self.signature, np.uint8))
        return path

    @classmethod
    def load(cls, path: "str | Path", certificate: "str | Path | None" = None) -> "Gallery":
        """Read and check a gallery file: fields, content hash, and the signature when a fleet
        certificate is given. Any failure is a :class:`GalleryFileError` naming the problem."""
        path = Path(path)
        raw = gf.read_arrays(path)
        stored = raw.pop("content_sha256")
        try:
            gallery = cls(names=raw["names"], embeddings=raw["embeddings"],
                          fingerprint=raw["fingerprint"], counts=raw["counts"],
                          suggested_threshold=raw["threshold"],
                          threshold_info=raw["threshold_info"], signature=raw["signature"])
        except gf.GalleryFileError as exc:
            raise gf.GalleryFileError(str(exc).replace("gallery:", f"{path}:", 1)) from None
        if gallery.content_sha256 != stored:
            raise gf.GalleryFileError(f"{path}: content hash mismatch: names, vectors, threshold "
                                      "or model fingerprint were changed after enrolment; "
                                      "re-enrol")
        cert = None
        if certificate is not None:
            from edge_resnet.bundle.signing import load_certificate

            cert = load_certificate(certificate)
        gf.check_signature(gallery.signature, stored, cert, str(path))
        return gallery


def embed_images(backend: Backend, images: Sequence[np.ndarray], batch_size: int = 16,
                 color_order: str = "RGB") -> np.ndarray:
    """Pooled features (N x D, unit norm) of RGB (or BGR) uint8 images."""
    chunks = []
    for i in range(0, len(images), batch_size):
        batch = preprocess_batch(images[i:i + batch_size], backend.spec, color_order=color_order)
        out = backend.infer(batch)
        if out.features is None:
            raise ModelError("this model has no features output; export it with "
                             "with_features=True (`edge-resnet export --features`) to use a "
                             "gallery")
        chunks.append(out.features.reshape(out.features.shape[0], -1))
    feats = l2_normalize(np.concatenate(chunks))
    if not np.isfinite(feats).all():
        raise ModelError("the model produced NaN/infinite features; check the model file")
    return feats


def group_by_identity(folder: "str | Path") -> "Dict[str, List[Path]]":
    """Image paths per identity (one subfolder each), names NFC-normalised.

    Two folders whose names differ only in Unicode form (``José`` typed composed or decomposed)
    would be two gallery entries for one person: refused, naming both.
    """
    images = ImageFolder(folder, labeled=True)
    if not images.classes:
        raise DataError(f"{folder}: expected one subfolder per identity")
    by_name: Dict[str, List[Path]] = {}
    origin: Dict[str, str] = {}
    for idx, raw in enumerate(images.classes):
        name = gf.normalize_name(raw)
        if name in origin:
            raise DataError(f"{folder}: folders {origin[name]!r} and {raw!r} are the same name "
                            "in different Unicode forms; merge them into one folder")
        origin[name] = raw
        by_name[name] = [Path(r.path) for r in images.records if r.label == idx]
    gf.check_names(list(by_name), str(folder))
    return by_name


def embed_identities(backend: Backend, by_name: Dict[str, List[Path]], batch_size: int,
                     skips: Optional[SkipCounter] = None) -> "Dict[str, np.ndarray]":
    """Features (unit rows, file order) of each identity's readable images.

    Decoded by the SDK's one decode layer (:func:`edge_resnet.images.decoded_chunks`: the next
    batch decoded ahead while this one runs, never all of an identity in memory), batched per
    identity. Unreadable files are skipped, counted in ``skips`` and warned about once with the
    count, so one bad photo does not stop an enrolment; an identity left with no readable image
    is a :class:`DataError` naming it, since enrolling it without photos is impossible.
    """
    skips = SkipCounter() if skips is None else skips
    before = dict(skips.skipped)
    feats: Dict[str, np.ndarray] = {}
    try:
        for name, paths in by_name.items():
            records = [ImageRecord(p, None) for p in paths]
            chunks = [embed_images(backend, [image for _, image in chunk], batch_size)
                      for chunk in decoded_chunks(records, batch_size, skips, prefetch=True)]
            if not chunks:
                raise DataError(f"identity {name!r} has no readable image ("
                                f"{_skip_reasons(skips, paths) or 'no files'}); add photos "
                                "that open, or remove its folder")
            feats[name] = np.concatenate(chunks)
    finally:
        _warn_skipped(skips, before)
    return feats


def _skip_reasons(skips: SkipCounter, paths: Sequence[Path], shown: int = 3) -> str:
    """Why the first few of ``paths`` were skipped, for a message."""
    reasons = [skips.skipped[str(p)] for p in paths if str(p) in skips.skipped]
    return "; ".join(reasons[:shown]) + (f"; ... {len(reasons) - shown} more"
                                         if len(reasons) > shown else "")


def _warn_skipped(skips: SkipCounter, before: Dict[str, str]) -> None:
    """One warning for the files this call skipped: the count and the first reasons."""
    new = [path for path in skips.skipped if path not in before]
    if new:
        log.warning("skipped %d unreadable image(s) while embedding identities: %s", len(new),
                    _skip_reasons(skips, [Path(p) for p in new]))


def enroll(backend: Backend, folder: "str | Path", batch_size: int = 16,
           target_far: float = 0.01, require_resolved: bool = False) -> Gallery:
    """Enrol one identity per subfolder of ``folder`` (one photo each is enough).

    The threshold is chosen for ``target_far`` from impostor scores between the enrolled
    identities and recorded with how it was derived (``threshold_info``). A ``target_far``
    the enrolment cannot resolve is a warning in that record, or with ``require_resolved`` a
    :class:`~edge_resnet.core.DataError` (for pipelines that must not ship such a gallery).
    """
    feats = embed_identities(backend, group_by_identity(folder), batch_size)
    names = list(feats)
    blocks = [feats[n] for n in names]
    threshold, info = derive_threshold(blocks, target_far, require_resolved)
    for warning in info["warnings"]:
        log.warning("%s", warning)
    centres = l2_normalize(np.stack([f.mean(axis=0) for f in blocks]))
    return Gallery(names=names, embeddings=centres, counts=[len(f) for f in blocks],
                   fingerprint=spec_fingerprint(backend.spec), suggested_threshold=threshold,
                   threshold_info=info)


def load_gallery_for(path: "str | Path", spec: ModelSpec,
                     certificate: "str | Path | None" = None) -> Gallery:
    """Load a gallery (signature checked when a fleet certificate is given) for this model."""
    gallery = Gallery.load(path, certificate)
    gallery.check_model(spec)
    return gallery


def match_threshold(value: Optional[float], gallery: Gallery) -> float:
    """The threshold to use: the user's, else the gallery's (derived at enrolment)."""
    if value is None:
        return gallery.suggested_threshold
    if not -1.0 <= value <= 1.0:
        raise InputError(f"match_threshold={value}: must be a cosine similarity in [-1, 1]")
    return value
