"""One statistics pass: per-tensor min/max and |x| histograms of every activation tensor.

The model runs once over the calibration data with ONNX Runtime, on a copy of the graph whose
outputs expose every float activation (graph input, and the output of every Conv/Relu/Add/pool/
Gemm...). All range methods (minmax, entropy, percentile, mse) are computed from these
statistics afterwards, so choosing or comparing methods never re-runs the model.

Histograms are of absolute values (symmetric INT8, as TensorRT uses), ``num_bins`` bins over
``[0, width * num_bins]``. The first batch fixes the bin width; when a later batch exceeds the
covered range, adjacent bins are merged pairwise (the width doubles) until it fits, which keeps
merging exact and memory bounded (pytorch-quantization instead appends bins of the same width).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from edge_resnet.core import CalibrationError, InputError, ModelError
from edge_resnet.fingerprints import onnx_graph_sha256
from edge_resnet.io_utils import atomic_path

__all__ = ["ActivationStats", "TensorStats", "activation_tensors", "collect_stats",
           "load_onnx", "model_fingerprint"]

log = logging.getLogger(__name__)

STATS_FORMAT = 1
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
# Ops whose float outputs TensorRT sees as layer outputs (anything else is shape bookkeeping).
_SKIP_OPS = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "ConstantOfShape",
             "Cast", "Identity"}


@dataclass
class TensorStats:
    """Statistics of one tensor: signed min/max and a histogram of |x| with bins of ``width``."""

    name: str
    minimum: float
    maximum: float
    hist: np.ndarray
    width: float
    count: int = 0

    @property
    def absmax(self) -> float:
        return float(max(abs(self.minimum), abs(self.maximum)))

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.hist) + 1, dtype=np.float64) * self.width

    def update(self, values: np.ndarray, scratch: Optional["_Scratch"] = None) -> None:
        """Fold one batch of this tensor into the statistics.

        Bin of |x| is ``min(int(float32(|x|) * float32(1 / width)), bins - 1)``; the work is done
        in cache-sized chunks with reused buffers (see :func:`_abs_bin_counts`).
        """
        low, high = float(values.min()), float(values.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise CalibrationError(
                f"tensor {self.name!r} has non-finite values (min {low}, max {high}): the model "
                "overflows or the input is broken; check preprocessing and the exported model")
        flat, peak = values.reshape(-1), max(-low, high)  # == max |x| exactly
        if flat.dtype != np.float32:  # bins are computed in float32
            with np.errstate(over="ignore"):  # overflow to inf is reported just below
                flat = flat.astype(np.float32)
            peak = max(-float(flat.min()), float(flat.max()))
        if not math.isfinite(peak):
            raise CalibrationError(f"tensor {self.name!r} exceeds the float32 range ({peak})")
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)
        self.count += values.size
        bins = len(self.hist)
        if self.width == 0.0:
            if peak == 0.0:
                self.hist[0] += flat.size
                return
            self.width = peak / bins
        while peak > self.width * bins:
            self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(axis=1),
                                        np.zeros(bins // 2, dtype=self.hist.dtype)])
            self.width *= 2.0
        self.hist += _abs_bin_counts(flat, np.float32(1.0 / self.width), bins,
                                     scratch or _Scratch())


class _Scratch:
    """Reusable chunk buffers (~1 MiB, fits L2), so binning neither allocates nor page-faults.

    One per thread: :func:`_abs_bin_counts` writes into them.
    """

    CHUNK = 1 << 16

    def __init__(self) -> None:
        self.scaled = np.empty(self.CHUNK, np.float32)
        self.index32 = np.empty(self.CHUNK, np.int32)
        self.index = np.empty(self.CHUNK, np.intp)


def _abs_bin_counts(flat: np.ndarray, scale: np.float32, bins: int, scratch: _Scratch
                    ) -> np.ndarray:
    """Counts of ``min(int(|x| * scale), bins - 1)`` over float32 ``flat``, chunk by chunk.

    Identical to clipping then bincount of ``(|x| * scale).astype(int)``: ``|x * s| == |x| * s``
    in IEEE arithmetic and truncation is symmetric, so ``abs(int32(x * s))`` is the same index.
    float32->int32 is a vector instruction (float32->int64 is not), and bincount wants intp,
    hence the two buffers. Indices above ``bins - 1`` (at most ``bins``, from rounding, as
    ``|x| <= width * bins``) are folded into the last bin instead of clipping every element.
    """
    counts = np.zeros(bins, np.int64)
    for start in range(0, flat.size, scratch.CHUNK):
        part = flat[start:start + scratch.CHUNK]
        n = part.size
        scaled, index32, index = scratch.scaled[:n], scratch.index32[:n], scratch.index[:n]
        np.multiply(part, scale, out=scaled)
        np.copyto(index32, scaled, casting="unsafe")
        np.abs(index32, out=index)
        chunk = np.bincount(index, minlength=bins)
        counts += chunk[:bins]
        if chunk.size > bins:
            counts[-1] += chunk[bins:].sum()
    return counts


@dataclass
class ActivationStats:
    """Statistics of every calibrated tensor of one model, saved/loaded as ``.npz``."""

    tensors: Dict[str, TensorStats]
    fingerprint: str
    num_images: int
    num_bins: int
    source: str = ""
    seconds: float = 0.0
    skipped: int = 0
    extra: Dict[str, str] = field(default_factory=dict)

    def save(self, path: "str | Path") -> Path:
        """Write atomically; the fingerprint lets :meth:`load` refuse another model's stats."""
        names = list(self.tensors)
        meta = {"format": STATS_FORMAT, "fingerprint": self.fingerprint, "names": names,
                "num_images": self.num_images, "num_bins": self.num_bins, "source": self.source,
                "seconds": self.seconds, "skipped": self.skipped, "extra": self.extra}
        arrays: Dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            "hist": np.stack([self.tensors[n].hist for n in names]),
            "scalars": np.array([[t.minimum, t.maximum, t.width, t.count]
                                 for t in self.tensors.values()], dtype=np.float64),
        }
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"statistics file {path} should end in .npz")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: "str | Path", fingerprint: Optional[str] = None) -> "ActivationStats":
        """Read statistics; with ``fingerprint``, refuse a file made from another model."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"statistics file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode("utf-8"))
                hist, scalars = data["hist"], data["scalars"]
        except (OSError, ValueError, KeyError) as exc:
            raise CalibrationError(f"{path} is not an edge-resnet statistics file: {exc}") from exc
        if meta.get("format") != STATS_FORMAT:
            raise CalibrationError(f"{path}: unsupported statistics format {meta.get('format')}")
        if fingerprint is not None and meta["fingerprint"] != fingerprint:
            raise CalibrationError(
                f"{path} holds statistics of another model (fingerprint "
                f"{meta['fingerprint'][:12]} != {fingerprint[:12]}); re-run calibration without "
                "stats_path or pass the statistics of this model")
        tensors = {name: TensorStats(name, float(s[0]), float(s[1]), hist[i].astype(np.int64),
                                     float(s[2]), int(s[3]))
                   for i, (name, s) in enumerate(zip(meta["names"], scalars))}
        return cls(tensors=tensors, fingerprint=meta["fingerprint"],
                   num_images=int(meta["num_images"]), num_bins=int(meta["num_bins"]),
                   source=meta.get("source", ""), seconds=float(meta.get("seconds", 0.0)),
                   skipped=int(meta.get("skipped", 0)), extra=dict(meta.get("extra", {})))


def load_onnx(path: "str | Path") -> "object":
    """Load an ONNX model or raise :class:`ModelError` saying what is wrong with the file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise ModelError(f"{path} is not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    return model


def model_fingerprint(model: "object") -> str:
    """sha256 of the graph (structure and weights, not metadata): identifies the model
    (:func:`edge_resnet.fingerprints.onnx_graph_sha256`, the one implementation)."""
    return onnx_graph_sha256(model)


def activation_tensors(model: "object") -> List[str]:
    """Float graph inputs and float outputs of compute nodes, in graph order.

    These are the tensors TensorRT assigns dynamic ranges to, and a superset of those the QDQ
    graph quantizes.
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)  # type: ignore[arg-type]
    graph = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    initializers = {init.name for init in graph.initializer}
    names = [i.name for i in graph.input
             if i.name not in initializers and types.get(i.name) in _FLOAT_TYPES]
    for node in graph.node:
        if node.op_type in _SKIP_OPS:
            continue
        names.extend(out for out in node.output if out and types.get(out) in _FLOAT_TYPES)
    return names


def _augmented_session(model: "object", names: Sequence[str], threads: int) -> "object":
    import onnx

    from edge_resnet.backends.onnxruntime import ort_session

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)  # type: ignore[arg-type]
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.ValueInfoProto(name=name))
    # Optimisations could fuse away the tensors we expose; keep the graph as TensorRT parses it.
    return ort_session(augmented, threads=threads, optimize=False)


def _fold(stats: Dict[str, TensorStats], names: Sequence[str], outputs: Sequence[np.ndarray],
          scratch: _Scratch) -> None:
    for name, values in zip(names, outputs):
        stats[name].update(values, scratch)


def collect_stats(model: "object", batches: Iterable[np.ndarray], *, num_bins: int = 2048,
                  tensors: Optional[Sequence[str]] = None, threads: int = 0,
                  total: Optional[int] = None, progress: bool = True, source: str = ""
                  ) -> ActivationStats:
    """Run the model once over ``batches`` and return statistics of ``tensors``
    (default: :func:`activation_tensors`)."""
    from tqdm import tqdm

    if num_bins < 256 or num_bins % 2:
        raise InputError(f"histogram bins must be an even number >= 256, got {num_bins}")
    names = list(tensors) if tensors is not None else activation_tensors(model)
    session = _augmented_session(model, names, threads)
    input_name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    stats = {n: TensorStats(n, float("inf"), float("-inf"), np.zeros(num_bins, np.int64), 0.0)
             for n in names}
    started, seen = time.perf_counter(), 0
    bar = tqdm(total=total, unit="img", desc="statistics", file=sys.stderr,
               disable=not progress or None)
    scratch, run = _Scratch(), session.run  # type: ignore[attr-defined]
    try:
        for batch in batches:
            # No reference to the outputs may outlive _fold: ~100 MB/image that ORT reuses for the
            # next batch only once freed (held, every run page-faults fresh memory: +15% time).
            _fold(stats, names, run(names, {input_name: batch}), scratch)
            seen += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    if seen == 0:
        raise CalibrationError("the calibration data yielded no batch")
    return ActivationStats(tensors=stats, fingerprint=model_fingerprint(model), num_images=seen,
                           num_bins=num_bins, source=source,
                           seconds=time.perf_counter() - started)
