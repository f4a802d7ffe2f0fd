"""``edge-resnet bench``: one table across models x backends (Ultralytics-style table,
trtexec-style percentiles).

Per (model, backend): file size, precision, top-1 accuracy on a labeled folder (optional),
batch-1 latency p50/p90/p99, throughput at a batch size, and end-to-end pipeline FPS on a video
(optional). A combination that fails to load is kept in the table with its error, never dropped
silently. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge_resnet.backends.base import Backend, load_backend
from edge_resnet.core import EdgeResnetError, InputError
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.telemetry import percentiles

__all__ = ["BenchOptions", "BenchRow", "format_table", "run_bench", "time_inference"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchOptions:
    backends: Sequence[str] = ("auto",)
    threads: int = 0
    data: Optional[str] = None
    max_images: Optional[int] = None
    video: Optional[str] = None
    batch: int = 8
    runs: int = 50
    warmup: int = 5


@dataclass
class BenchRow:
    model: str
    backend: str
    size_mb: float
    precision: str = ""
    accuracy: Optional[float] = None
    latency_ms: Dict[str, float] = field(default_factory=dict)
    throughput: Optional[float] = None
    batch: int = 1
    pipeline_fps: Optional[float] = None
    error: str = ""
    backend_reason: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def sample_batch(backend: Backend, size: int, seed: int = 0) -> np.ndarray:
    """A batch of ``size`` preprocessed 640x480 noise frames in the model's input format."""
    rng = np.random.RandomState(seed)
    frames = [rng.randint(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(size)]
    return preprocess_batch(frames, backend.spec, color_order="BGR")


def time_inference(backend: Backend, batch: np.ndarray, runs: int, warmup: int = 5
                   ) -> List[float]:
    """Wall-clock milliseconds of ``runs`` inferences of ``batch`` after ``warmup`` untimed."""
    if runs < 1:
        raise InputError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        backend.infer(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.infer(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _accuracy(backend: Backend, data: str, max_images: Optional[int]) -> float:
    from edge_resnet.evaluation.evaluate import predict
    from edge_resnet.evaluation.metrics import topk_accuracy
    from edge_resnet.images import ImageFolder

    folder = ImageFolder(data, labels=backend.spec.labels, labeled=True)
    result = predict(backend, folder.sample(max_images), batch_size=16)
    if result.labels is None or len(result.labels) == 0:
        raise InputError(f"{data}: no labeled readable images for accuracy")
    return float(topk_accuracy(result.logits, result.labels, 1))


def pipeline_fps(backend: Backend, video: str) -> float:
    """End-to-end FPS of the streaming pipeline on a video file (no outputs)."""
    from edge_resnet.runtime.pipeline import Pipeline
    from edge_resnet.runtime.sources import create_source

    snapshot = Pipeline(backend, create_source(video), []).run()
    return float(snapshot["fps"])


def _bench_one(model: str, backend_name: str, opts: BenchOptions) -> BenchRow:
    row = BenchRow(model=model, backend=backend_name,
                   size_mb=Path(model).stat().st_size / 1e6, batch=opts.batch)
    with load_backend(backend_name, model, {"threads": opts.threads}) as backend:
        row.precision = backend.info.precision
        row.backend = backend.info.name  # what ``auto`` chose
        row.backend_reason = str(backend.info.details.get("backend_choice", ""))
        if opts.data:
            row.accuracy = _accuracy(backend, opts.data, opts.max_images)
        lat = percentiles(time_inference(backend, sample_batch(backend, 1), opts.runs,
                                         opts.warmup))
        row.latency_ms = {k: round(float(v), 3) for k, v in lat.items() if k != "count"}
        big = sample_batch(backend, opts.batch)
        runs = max(3, opts.runs // opts.batch)
        t = percentiles(time_inference(backend, big, runs, 1))
        row.throughput = opts.batch * 1000.0 / t["mean"]
        if opts.video:
            row.pipeline_fps = pipeline_fps(backend, opts.video)
    return row


def run_bench(models: Sequence[str], options: BenchOptions) -> List[BenchRow]:
    """Benchmark every model with every backend, in order."""
    for model in models:
        if not Path(model).is_file():
            raise InputError(f"model {model} does not exist")
    rows = []
    for model in models:
        for name in options.backends:
            try:
                rows.append(_bench_one(model, name, options))
            except EdgeResnetError as exc:
                log.error("%s on %s failed: %s", model, name, exc)
                rows.append(BenchRow(model=model, backend=name,
                                     size_mb=Path(model).stat().st_size / 1e6, error=str(exc)))
    return rows


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[BenchRow]) -> str:
    """Markdown table of the rows (failures keep their row with the error)."""
    header = ["model", "backend", "MB", "precision", "top-1 %", "bs1 p50 ms", "p90 ms", "p99 ms",
              "img/s @bs", "pipeline FPS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.error:
            cells = [Path(r.model).name, r.backend, _fmt(r.size_mb), "error: " + r.error[:80]]
            cells += [""] * (len(header) - len(cells))
        else:
            lat = r.latency_ms
            cells = [Path(r.model).name, r.backend, _fmt(r.size_mb), r.precision,
                     _fmt(None if r.accuracy is None else r.accuracy * 100, 2),
                     _fmt(lat.get("p50"), 2), _fmt(lat.get("p90"), 2), _fmt(lat.get("p99"), 2),
                     f"{_fmt(r.throughput)} @{r.batch}", _fmt(r.pipeline_fps)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"backend of {Path(r.model).name}: {r.backend} ({r.backend_reason})"
              for r in rows if r.backend_reason and not r.backend_reason.startswith("asked")]
    return "\n".join(lines)
