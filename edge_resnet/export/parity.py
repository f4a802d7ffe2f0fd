"""Parity proof: the exported ONNX computes what the PyTorch model computes, from images.

The check runs end to end on real images, each side fed the way it is fed in production:
PyTorch gets the SDK's float preprocessing for the model's own spec; ONNX Runtime gets the
batch that the graph's *embedded* spec asks for (uint8 frames for a fused graph). So a wrong
mean/std, colour order or resolution in the exported graph or its metadata shows up as a logit
difference, not only a bug in the exporter. Defaults are tight: FP32 vs FP32 differs by ~1e-5
in logits; a normalisation or channel-order mistake moves logits by ~1e-1 or more.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
from edge_resnet.core import DataError, InputError, ModelSpec, ParityError
from edge_resnet.evaluation.metrics import agreement_stats
from edge_resnet.images import ImageFolder
from edge_resnet.io_utils import ensure_parent
from edge_resnet.preprocessing import preprocess_batch

__all__ = ["DEFAULT_ATOL", "DEFAULT_MIN_AGREEMENT", "DEFAULT_RTOL", "CheckImages", "ParityReport",
           "check_fused_vs_unfused", "check_parity", "compare_logits", "export_verified",
           "load_check_images"]

log = logging.getLogger(__name__)

# Allowed |logit difference| = atol + rtol * max |reference logit|. FP32 kernels (oneDNN vs
# MLAS, BN folded vs not) differ by ~1e-4 on ResNet50 logits; a normalisation or channel-order
# mistake moves them by ~1e-1 and more. rtol keeps the bound fair for large-logit models.
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-5
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class ParityReport:
    """Agreement of a candidate's logits with a reference's on the same images."""

    reference: str
    candidate: str
    n_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    min_cosine: float
    atol: float
    min_top1_agreement: float
    rtol: float = DEFAULT_RTOL
    max_abs_reference: float = 0.0
    # the ``features`` output (pooled vector or embedding), when the graph has one
    features_max_abs_diff: Optional[float] = None
    features_tolerance: Optional[float] = None

    @property
    def tolerance(self) -> float:
        """The bound on max |diff|: ``atol + rtol * max |reference logit|``."""
        return self.atol + self.rtol * self.max_abs_reference

    @property
    def ok(self) -> bool:
        features_ok = (self.features_max_abs_diff is None or self.features_tolerance is None
                       or self.features_max_abs_diff <= self.features_tolerance)
        return (self.max_abs_diff <= self.tolerance and features_ok
                and self.top1_agreement >= self.min_top1_agreement)

    def to_dict(self) -> Dict[str, Any]:
        return {"reference": self.reference, "candidate": self.candidate,
                "n_images": self.n_images, "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": self.mean_abs_diff, "top1_agreement": self.top1_agreement,
                "min_cosine": self.min_cosine, "atol": self.atol, "rtol": self.rtol,
                "max_abs_reference": self.max_abs_reference, "tolerance": self.tolerance,
                "min_top1_agreement": self.min_top1_agreement,
                "features_max_abs_diff": self.features_max_abs_diff,
                "features_tolerance": self.features_tolerance, "ok": self.ok}

    def summary(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        features = ("" if self.features_max_abs_diff is None else
                    f", features max |diff| {self.features_max_abs_diff:.3g} (allowed "
                    f"{self.features_tolerance:.3g})")
        return (f"parity {verdict}: {self.candidate} vs {self.reference} on {self.n_images} "
                f"images: max |diff| {self.max_abs_diff:.3g} (allowed {self.tolerance:.3g}), mean "
                f"{self.mean_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.2%} "
                f"(min {self.min_top1_agreement:.0%}), min cosine {self.min_cosine:.6f}"
                f"{features}")


def _check_thresholds(atol: float, min_top1_agreement: float, rtol: float = 0.0) -> None:
    if not atol > 0:
        raise InputError(f"atol must be positive, got {atol}")
    if not rtol >= 0:
        raise InputError(f"rtol must be >= 0, got {rtol}")
    if not 0.0 <= min_top1_agreement <= 1.0:
        raise InputError(f"minimum top-1 agreement must be in [0, 1], got {min_top1_agreement}")


def compare_logits(reference: np.ndarray, candidate: np.ndarray, *, reference_name: str,
                   candidate_name: str, atol: float = DEFAULT_ATOL,
                   min_top1_agreement: float = DEFAULT_MIN_AGREEMENT,
                   rtol: float = DEFAULT_RTOL) -> ParityReport:
    """Build a :class:`ParityReport` from two N x C logit arrays (raises only on shape)."""
    _check_thresholds(atol, min_top1_agreement, rtol)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ParityError(f"{candidate_name} gives logits of shape {candidate.shape}, "
                          f"{reference_name} {reference.shape}; the graph is not this model")
    stats = agreement_stats(reference, candidate)  # the one comparator's statistics
    return ParityReport(
        reference=reference_name, candidate=candidate_name, n_images=stats.samples,
        max_abs_diff=stats.max_abs_logit_diff,
        mean_abs_diff=float(np.abs(reference.astype(np.float64) - candidate).mean()),
        top1_agreement=stats.agreement, min_cosine=stats.cosine_min, atol=atol,
        min_top1_agreement=min_top1_agreement, rtol=rtol,
        max_abs_reference=float(np.abs(reference).max()))


def _raise_if_failed(report: ParityReport) -> ParityReport:
    log.debug(report.summary())
    if not report.ok:
        raise ParityError(report.summary() + "; the export does not reproduce the model: check "
                          "mean/std, colour order and resolution of the spec")
    return report


def _backend_logits(backend: OnnxRuntimeBackend, images: Sequence[np.ndarray],
                    batch_size: int) -> np.ndarray:
    """Run the graph on the batches its embedded spec asks for (uint8 frames when fused)."""
    return _backend_outputs(backend, images, batch_size)[0]


def _backend_outputs(backend: OnnxRuntimeBackend, images: Sequence[np.ndarray],
                     batch_size: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(logits, features or None) of the graph on ``images``."""
    outs = [backend.infer(preprocess_batch(images[i:i + batch_size], backend.spec))
            for i in range(0, len(images), batch_size)]
    features = [o.features for o in outs if o.features is not None]
    return (np.concatenate([o.logits for o in outs]),
            np.concatenate(features) if len(features) == len(outs) else None)


def _check_labels(backend: OnnxRuntimeBackend, expected: ModelSpec, what: str) -> None:
    if backend.spec.labels != expected.labels:
        raise ParityError(f"{backend.info.model_path} carries labels "
                          f"{list(backend.spec.labels[:5])}... that differ from {what}'s "
                          f"{list(expected.labels[:5])}...")


def _torch_logits(model: Any, images: Sequence[np.ndarray], spec: ModelSpec,
                  batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(logits, features) of the PyTorch model; features are what ``fc`` reads (the pooled
    vector, or the embedding of a model with an embedding head), taken with a hook."""
    import torch

    model.eval()
    chunks, features = [], []
    hook = model.fc.register_forward_hook(
        lambda _m, inputs, _o: features.append(inputs[0].float().numpy()))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                batch = torch.from_numpy(preprocess_batch(images[i:i + batch_size], spec))
                chunks.append(model(batch).float().numpy())
    finally:
        hook.remove()
    return np.concatenate(chunks), np.concatenate(features)


def _with_features(report: ParityReport, reference: np.ndarray,
                   candidate: Optional[np.ndarray]) -> ParityReport:
    """The report with the ``features`` output compared too (same atol/rtol rule)."""
    import dataclasses

    if candidate is None:
        return report
    if candidate.shape != reference.shape:
        raise ParityError(f"{report.candidate} gives features of shape {candidate.shape}, "
                          f"{report.reference} {reference.shape}; the graph is not this model")
    diff = float(np.abs(reference.astype(np.float64) - candidate).max())
    return dataclasses.replace(report, features_max_abs_diff=diff, features_tolerance=(
        report.atol + report.rtol * float(np.abs(reference).max())))


def _check_images(images: Sequence[np.ndarray], batch_size: int) -> None:
    if len(images) == 0:
        raise InputError("parity needs at least one image")
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")


def check_parity(model: Any, onnx_path: "str | Path", images: Sequence[np.ndarray],
                 spec_of_model: ModelSpec, *, atol: float = DEFAULT_ATOL,
                 min_top1_agreement: float = DEFAULT_MIN_AGREEMENT,
                 rtol: float = DEFAULT_RTOL, batch_size: int = 8) -> ParityReport:
    """Compare PyTorch FP32 logits with the ONNX graph's on ``images`` (uint8 RGB HxWx3), and
    its ``features`` output, when it has one, with what the model's ``fc`` reads (same bound).

    ``spec_of_model`` is the PyTorch model's own (unfused) spec. Raises :class:`ParityError`
    when the max |logit difference| exceeds ``atol + rtol * max |reference logit|`` or top-1
    agreement falls below
    ``min_top1_agreement``; returns the report otherwise.
    """
    _check_thresholds(atol, min_top1_agreement, rtol)
    _check_images(images, batch_size)
    if spec_of_model.fused_preprocessing:
        raise InputError("spec_of_model must be the PyTorch model's spec (float input), "
                         "not the fused graph's")
    reference, ref_features = _torch_logits(model, images, spec_of_model, batch_size)
    with OnnxRuntimeBackend(onnx_path) as backend:
        _check_labels(backend, spec_of_model, "the PyTorch model")
        candidate, features = _backend_outputs(backend, images, batch_size)
    return _raise_if_failed(_with_features(compare_logits(
        reference, candidate, reference_name="pytorch-fp32",
        candidate_name=f"onnxruntime:{Path(onnx_path).name}", atol=atol,
        min_top1_agreement=min_top1_agreement, rtol=rtol), ref_features, features))


def check_fused_vs_unfused(fused_onnx: "str | Path", unfused_onnx: "str | Path",
                           images: Sequence[np.ndarray], *, atol: float = DEFAULT_ATOL,
                           min_top1_agreement: float = DEFAULT_MIN_AGREEMENT,
                           rtol: float = DEFAULT_RTOL, batch_size: int = 8) -> ParityReport:
    """The fused graph fed uint8 frames must match the unfused graph fed SDK preprocessing."""
    _check_thresholds(atol, min_top1_agreement, rtol)
    _check_images(images, batch_size)
    with OnnxRuntimeBackend(unfused_onnx) as backend:
        if backend.spec.fused_preprocessing:
            raise InputError(f"{unfused_onnx} has fused preprocessing; give the unfused export")
        reference = _backend_logits(backend, images, batch_size)
        spec = backend.spec
    with OnnxRuntimeBackend(fused_onnx) as fused:
        if not fused.spec.fused_preprocessing:
            raise InputError(f"{fused_onnx} takes float input; give the fused export")
        _check_labels(fused, spec, "the unfused graph")
        candidate = _backend_logits(fused, images, batch_size)
    return _raise_if_failed(compare_logits(
        reference, candidate, reference_name=f"onnxruntime:{Path(unfused_onnx).name}",
        candidate_name=f"onnxruntime:{Path(fused_onnx).name}", atol=atol,
        min_top1_agreement=min_top1_agreement, rtol=rtol))


# --------------------------------------------------------------------------- export + proof

@dataclass(frozen=True)
class CheckImages:
    """Images for a parity proof and a line saying where they came from."""

    images: List[np.ndarray]
    description: str


def load_check_images(folder: "Optional[str | Path]" = None, count: int = 32,
                      seed: int = 0) -> CheckImages:
    """``count`` images from ``folder`` (any layout), or scikit-learn's bundled digits.

    The digits need no download, so every export can be proven, even offline; a folder of the
    user's own photos is the better proof and is used whenever given.
    """
    if count < 1:
        raise InputError(f"number of check images must be positive, got {count}")
    if folder is not None:
        source = ImageFolder(folder, labeled=False)
        images = [img for _, img in source.iter_images(source.sample(count, seed))]
        if not images:
            raise DataError(f"none of the sampled files in {folder} is a readable image "
                            f"({source.skips.count} skipped)")
        skipped = f", {source.skips.count} unreadable skipped" if source.skips.count else ""
        return CheckImages(images, f"{len(images)} images from {folder}{skipped}")
    from edge_resnet.datasets.digits import write_digits_folder

    with tempfile.TemporaryDirectory(prefix="edge-resnet-digits-") as tmp:
        digits = write_digits_folder(tmp, size=32)
        source = ImageFolder(digits.test_dir, labeled=False)
        images = [img for _, img in source.iter_images(source.sample(count, seed))]
    # The digits are grey; a per-image colour tint makes a channel-order mistake visible.
    rng = np.random.default_rng(seed)
    tinted = [np.round(img * rng.uniform(0.15, 1.0, size=3)).astype(np.uint8) for img in images]
    return CheckImages(tinted, f"{len(images)} scikit-learn digits, colour-tinted (32x32 demo "
                               "images; give check_data for your own)")


def export_verified(model: Any, spec: ModelSpec, out_path: "str | Path",
                    images: Optional[Sequence[np.ndarray]], *, atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL,
                    min_top1_agreement: float = DEFAULT_MIN_AGREEMENT,
                    **export_options: Any) -> Tuple[Any, Optional[ParityReport]]:
    """Export, prove parity on ``images``, and only then move the file to ``out_path``.

    The graph is written into a temporary folder beside ``out_path``; a failed export or parity
    proof leaves nothing at ``out_path``, so no later stage can pick up an unproven model.
    ``images=None`` skips the proof (returns ``None`` as the report).
    """
    from edge_resnet.export.onnx_export import export_onnx

    _check_thresholds(atol, min_top1_agreement, rtol)
    try:
        final = ensure_parent(out_path)
        stage = tempfile.TemporaryDirectory(prefix=f".{final.name}.", dir=final.parent)
    except OSError as exc:
        raise InputError(f"cannot write {out_path}: {exc.strerror or exc}; choose a writable "
                         "output path") from exc
    with stage as tmp:
        staged = Path(tmp) / final.name
        result = export_onnx(model, spec, staged, **export_options)
        report = None
        if images is not None:
            report = check_parity(model, staged, images, spec, atol=atol, rtol=rtol,
                                  min_top1_agreement=min_top1_agreement)
        os.replace(staged, final)
    result.path = final
    return result, report
