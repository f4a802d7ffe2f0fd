"""The on-device health check: load each model of a staged release, run the golden inputs.

The manifest carries golden images and the logits the FP32 reference gave on the host. A staged
release passes when, for every model payload, the configured backend loads it, its logits are
within the manifest's tolerance for that model's precision (max absolute difference and top-1
agreement with the reference) and its median single-image latency (after one warm-up run) is
within the manifest's budget. Images go through :func:`edge_resnet.preprocessing.preprocess_batch`
with the model's own spec, so the device's preprocessing is checked too.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from edge_resnet.backends import load_backend
from edge_resnet.bundle.errors import BundleError
from edge_resnet.bundle.manifest import Manifest, Tolerance
from edge_resnet.core import EdgeResnetError
from edge_resnet.preprocessing import preprocess_batch

__all__ = ["GoldenSet", "ModelCheck", "check_release", "compare", "load_golden", "run_golden"]


@dataclass(frozen=True)
class GoldenSet:
    """Golden images (uint8 HxWx3 RGB, any size) and the reference logits (N x classes)."""

    images: Tuple[np.ndarray, ...]
    expected: np.ndarray

    def save(self, path: "str | Path") -> None:
        arrays: Dict[str, Any] = {f"image_{i}": img for i, img in enumerate(self.images)}
        arrays["expected"] = self.expected.astype(np.float32)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)


@dataclass(frozen=True)
class ModelCheck:
    """The health verdict on one model payload."""

    path: str
    precision: str
    max_abs: float
    top1_agreement: float
    median_ms: float
    ok: bool
    reason: str
    ran: str = ""  # the file that ran (the model, or its engine), slot-relative
    backend: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"path": self.path, "precision": self.precision, "max_abs": self.max_abs,
                "top1_agreement": self.top1_agreement, "median_ms": self.median_ms,
                "ok": self.ok, "reason": self.reason, "ran": self.ran or self.path,
                "backend": self.backend}


def load_golden(path: "str | Path") -> GoldenSet:
    """Read a golden ``.npz`` (no pickles) and check its arrays agree with each other."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            expected = np.asarray(data["expected"], dtype=np.float32)
            count = len([k for k in data.files if k.startswith("image_")])
            images = tuple(np.asarray(data[f"image_{i}"]) for i in range(count))
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"golden inputs {path} are unreadable: {exc}") from None
    if (expected.ndim != 2 or expected.shape[0] != len(images) or not images
            or any(img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3
                   for img in images)):
        raise BundleError(f"golden inputs {path}: need N uint8 HxWx3 images and N x C logits")
    return GoldenSet(images, expected)


def run_golden(model_path: "str | Path", golden: GoldenSet, backend: str = "onnxruntime",
               **options: Any) -> Tuple[np.ndarray, List[float]]:
    """Logits of ``model_path`` on each golden image (batch 1) and per-image latencies in ms."""
    with load_backend(backend, model_path, options or None) as model:  # settings, typed there
        batches = [preprocess_batch([img], model.spec) for img in golden.images]
        model.infer(batches[0])  # warm-up: first-run allocations are not the steady latency
        logits, times = [], []
        for batch in batches:
            start = time.perf_counter()
            out = model.infer(batch)
            times.append((time.perf_counter() - start) * 1000.0)
            logits.append(np.asarray(out.logits, dtype=np.float32).reshape(1, -1))
    return np.concatenate(logits), times


def compare(logits: np.ndarray, expected: np.ndarray) -> Tuple[float, float]:
    """(max |logits - expected|, share of images whose top-1 class agrees)."""
    if logits.shape != expected.shape:
        raise BundleError(f"model gives logits of shape {logits.shape}, the reference "
                          f"{expected.shape}: not the model the golden outputs were made for")
    max_abs = float(np.max(np.abs(logits.astype(np.float64) - expected)))
    agree = float(np.mean(np.argmax(logits, axis=1) == np.argmax(expected, axis=1)))
    return max_abs, agree


def _verdict(path: str, precision: str, logits: np.ndarray, times: List[float],
             golden: GoldenSet, tol: Tolerance, budget_ms: float, ran: str,
             backend: str) -> ModelCheck:
    max_abs, agree = compare(logits, golden.expected)
    median = float(statistics.median(times))
    problems = []
    if not max_abs <= tol.max_abs:  # NaN fails too
        problems.append(f"max |logit error| {max_abs:.4g} > tolerance {tol.max_abs:.4g}")
    if agree < tol.min_top1_agreement:
        problems.append(f"top-1 agreement {agree:.3f} < {tol.min_top1_agreement:.3f}")
    if median > budget_ms:
        problems.append(f"median latency {median:.2f} ms > budget {budget_ms:.2f} ms")
    return ModelCheck(path, precision, max_abs, agree, median, not problems,
                      "; ".join(problems) or "ok", ran, backend)


def check_release(slot: "str | Path", manifest: Manifest, backend: str = "onnxruntime",
                  runs: Optional[Mapping[str, Tuple[str, str]]] = None,
                  **options: Any) -> List[ModelCheck]:
    """Health-check every model payload of the release staged under ``slot``.

    ``runs`` maps a model payload's path to the (slot-relative file, backend) that runs it on
    this device (its TensorRT engine, see :mod:`edge_resnet.bundle.engines`); a model not in it
    runs as itself on ``backend``. The engine is held to the tolerance of the model's precision.
    """
    slot = Path(slot)
    golden = load_golden(slot / manifest.golden)
    checks = []
    for item in manifest.by_role("model"):
        precision = item.precision or "fp32"
        ran, ran_backend = (runs or {}).get(item.path, (item.path, backend))
        try:
            logits, times = run_golden(slot / ran, golden, ran_backend, **options)
            checks.append(_verdict(item.path, precision, logits, times, golden,
                                   manifest.tolerance[precision], manifest.latency_budget_ms,
                                   ran, ran_backend))
        except Exception as exc:  # any failure to load or run the model fails the check
            text = str(exc) if isinstance(exc, EdgeResnetError) else f"{type(exc).__name__}: {exc}"
            checks.append(ModelCheck(item.path, precision, float("nan"), 0.0, float("nan"),
                                     False, f"cannot run {ran} on {ran_backend}: "
                                     + " ".join(text.split()), ran, ran_backend))
    return checks
