"""Embedding gallery for identification (face-ID style): enrol identities, match embeddings.

Each identity is the L2-normalised mean of its images' L2-normalised pooled features; a query
matches the identity of highest cosine similarity, or ``unknown`` below the threshold. The
gallery file (.npz) stores names, embeddings and a fingerprint of the model that made them, so a
gallery is never matched against embeddings of a different network.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.backends.base import Backend
from edge_resnet.core import DataError, InputError, ModelError, ModelSpec
from edge_resnet.images import ImageFolder
from edge_resnet.io_utils import atomic_path
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.postprocess import UNKNOWN

__all__ = ["Gallery", "Match", "embed_images", "enroll", "l2_normalize", "spec_fingerprint",
           "suggest_threshold"]

log = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


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
    identity: str
    similarity: float
    best: str


@dataclass
class Gallery:
    """Enrolled identities: ``embeddings[i]`` (unit norm) belongs to ``names[i]``."""

    names: List[str]
    embeddings: np.ndarray
    fingerprint: str
    counts: List[int] = field(default_factory=list)
    suggested_threshold: float = 0.0

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
                             best=name))
        return out

    def check_model(self, spec: ModelSpec) -> None:
        """Refuse a model whose fingerprint differs from the one the gallery was enrolled with."""
        found = spec_fingerprint(spec)
        if found != self.fingerprint:
            raise ModelError(f"the gallery was enrolled with another model (fingerprint "
                             f"{self.fingerprint}, this model {found}); re-run "
                             "`edge-resnet gallery enroll` with this model")

    def save(self, path: "str | Path") -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"gallery file must end in .npz, got {path}")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, names=np.array(self.names), embeddings=self.embeddings,
                         fingerprint=np.array(self.fingerprint), counts=np.array(self.counts),
                         suggested_threshold=np.array(self.suggested_threshold))
        return path

    @classmethod
    def load(cls, path: "str | Path") -> "Gallery":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"gallery file {path} does not exist; create it with "
                             "`edge-resnet gallery enroll`")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(names=[str(n) for n in data["names"]],
                           embeddings=data["embeddings"].astype(np.float32),
                           fingerprint=str(data["fingerprint"]),
                           counts=[int(c) for c in data["counts"]],
                           suggested_threshold=float(data["suggested_threshold"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path} is not an edge-resnet gallery: {exc}") from exc


def embed_images(backend: Backend, images: Sequence[np.ndarray], batch_size: int = 16,
                 color_order: str = "RGB") -> np.ndarray:
    """Pooled features (N x D, unit norm) of RGB (or BGR) uint8 images."""
    chunks = []
    for i in range(0, len(images), batch_size):
        batch = preprocess_batch(images[i:i + batch_size], backend.spec, color_order=color_order)
        out = backend.infer(batch)
        if out.features is None:
            raise ModelError("this model has no features output; export it with features "
                             "(export_onnx(..., with_features=True)) to use a gallery")
        chunks.append(out.features.reshape(out.features.shape[0], -1))
    return l2_normalize(np.concatenate(chunks))


def enroll(backend: Backend, folder: "str | Path", batch_size: int = 16) -> Gallery:
    """Enrol one identity per subfolder of ``folder``.

    ``suggested_threshold`` comes from the enrolment images alone: genuine scores are each
    image's similarity to its own identity, impostor scores its best similarity to any other
    identity (every enrolled identity plays the stranger for the others); the threshold
    minimises false rejections + false acceptances over those two sets.
    """
    images = ImageFolder(folder, labeled=True)
    if not images.classes:
        raise DataError(f"{folder}: expected one subfolder per identity")
    by_id: Dict[int, List[np.ndarray]] = {}
    for record, rgb in images.iter_images():
        by_id.setdefault(int(record.label or 0), []).append(rgb)
    if images.skips.count:
        log.warning("skipped %d unreadable images while enrolling", images.skips.count)
    names: List[str] = []
    feats: List[np.ndarray] = []
    counts: List[int] = []
    for idx, name in enumerate(images.classes):
        imgs = by_id.get(idx)
        if not imgs:
            raise DataError(f"identity {name!r} has no readable image")
        feats.append(embed_images(backend, imgs, batch_size))
        names.append(name)
        counts.append(len(imgs))
    centres = l2_normalize(np.stack([f.mean(axis=0) for f in feats]))
    return Gallery(names=names, embeddings=centres, counts=counts,
                   fingerprint=spec_fingerprint(backend.spec),
                   suggested_threshold=suggest_threshold(feats, centres))


def suggest_threshold(feats: Sequence[np.ndarray], centres: np.ndarray) -> float:
    """Threshold minimising FRR + FAR of genuine vs best-impostor similarities."""
    genuine, impostor = [], []
    for i, f in enumerate(feats):
        sims = f @ centres.T
        genuine.append(sims[:, i])
        if len(centres) > 1:
            impostor.append(np.delete(sims, i, axis=1).max(axis=1))
    gen = np.concatenate(genuine)
    if not impostor:
        return float(np.quantile(gen, 0.05))
    imp = np.concatenate(impostor)
    candidates = np.unique(np.concatenate([gen, imp]))
    frr = np.searchsorted(np.sort(gen), candidates, side="left") / len(gen)
    far = 1.0 - np.searchsorted(np.sort(imp), candidates, side="left") / len(imp)
    best = int(np.argmin(frr + far))
    return float(candidates[best])


def load_gallery_for(path: "str | Path", spec: ModelSpec) -> Gallery:
    """Load a gallery and check it was enrolled with this model."""
    gallery = Gallery.load(path)
    gallery.check_model(spec)
    return gallery


def match_threshold(value: Optional[float], gallery: Gallery) -> float:
    """The threshold to use: the user's, else the gallery's suggestion."""
    if value is None:
        return gallery.suggested_threshold
    if not -1.0 <= value <= 1.0:
        raise InputError(f"--match-threshold is a cosine similarity in [-1, 1], got {value}")
    return value
