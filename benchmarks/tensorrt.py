"""TensorRT engine latency and throughput, trtexec-style, with what makes Jetson numbers comparable.

    python benchmarks/tensorrt.py ENGINE [--batch 1] [--warmup 2] [--duration 10] [--json out.json]
    python benchmarks/tensorrt.py --env-only          # the environment record alone (no TensorRT)

After ``--warmup`` seconds of untimed runs, times each ``infer`` of a fixed preprocessed batch
for ``--duration`` seconds (end to end on the host: pinned H2D copy + ``execute_async_v3`` +
D2H copy + stream synchronize, as the runtime pipeline sees it) and prints min/mean/median/
p90/p95/p99/max latency and throughput. It records beside the numbers: the device profile,
L4T/JetPack, TensorRT and CUDA versions, the power mode (``nvpmodel -q``), whether clocks are
locked (``jetson_clocks --show``, needs root), and thermal-zone temperatures before and after.
MLPerf's ResNet50 numbers (facts doc) are printed for context: they hold for ImageNet ResNet50
at 224x224, so compare only an engine of that model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

MLPERF = [  # ResNet50 INT8, TensorRT 8.5.2 (mlcommons inference results v3.0/v3.1, closed/NVIDIA)
    ("AGX Orin 64GB", "single-stream p90 0.640 ms; offline 6,424 samples/s (GPU + 2 DLA)"),
    ("Orin NX 16GB", "single-stream p90 1.082 ms; offline 2,641 samples/s"),
]


def _command(cmd: List[str]) -> Optional[str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip()
    return text if done.returncode == 0 else f"(exit {done.returncode}) {text[:300]}"


def temperatures() -> Dict[str, float]:
    """Every /sys/class/thermal zone: type -> degrees C."""
    temps: Dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            temps[f"{kind}({zone.name[12:]})"] = int((zone / "temp").read_text()) / 1000.0
        except (OSError, ValueError):
            continue
    return temps


def environment() -> Dict[str, Any]:
    from edge_resnet.devices.detect import detect

    found = detect()
    return {"device": found.profile, "device_tree_model": found.device_tree_model,
            "l4t": found.l4t, "jetpack": found.jetpack, "tensorrt": found.tensorrt,
            "cuda": found.cuda, "gpus": [g.__dict__ for g in found.gpus],
            "power_mode": _command(["nvpmodel", "-q"]),
            "clocks": _command(["jetson_clocks", "--show"]),
            "temperatures_c": temperatures()}


def latency_stats(samples_ms: List[float], batch: int, seconds: float) -> Dict[str, float]:
    a = np.asarray(samples_ms)
    stats = {"min": a.min(), "mean": a.mean(), "median": np.median(a),
             "p90": np.percentile(a, 90), "p95": np.percentile(a, 95),
             "p99": np.percentile(a, 99), "max": a.max()}
    out = {k: round(float(v), 4) for k, v in stats.items()}
    out["throughput_img_s"] = round(len(a) * batch / seconds, 1)
    out["iterations"] = float(len(a))
    return out


def run(engine_path: Path, batch: int, warmup: float, duration: float) -> Dict[str, Any]:
    from edge_resnet.backends import load_backend

    with load_backend("tensorrt", engine_path) as engine:
        spec = engine.spec
        rng = np.random.default_rng(0)
        if spec.fused_preprocessing:
            data = rng.integers(0, 256, (batch, spec.resolution, spec.resolution, 3), np.uint8)
        else:
            data = rng.standard_normal((batch, 3, spec.resolution, spec.resolution)).astype(np.float32)
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            engine.infer(data)
        samples: List[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            t0 = time.perf_counter()
            engine.infer(data)
            samples.append((time.perf_counter() - t0) * 1000.0)
        elapsed = time.perf_counter() - start
        return {"engine": str(engine_path), "precision": engine.info.precision,
                "backend_device": engine.info.device, "batch": batch,
                "latency_ms": latency_stats(samples, batch, elapsed)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", nargs="?", type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--json", type=Path, help="also write the record here")
    parser.add_argument("--env-only", action="store_true")
    args = parser.parse_args(argv)
    record: Dict[str, Any] = {"environment_before": environment()}
    if not args.env_only:
        if args.engine is None:
            parser.error("ENGINE is required unless --env-only")
        record["result"] = run(args.engine, args.batch, args.warmup, args.duration)
        record["temperatures_after_c"] = temperatures()
        lat = record["result"]["latency_ms"]
        print(f"{args.engine.name} batch {args.batch}: " + ", ".join(
            f"{k} {lat[k]:.3f} ms" for k in ("min", "mean", "median", "p90", "p95", "p99", "max"))
            + f"; {lat['throughput_img_s']:.1f} img/s over {int(lat['iterations'])} runs")
        for device, numbers in MLPERF:
            print(f"  MLPerf ResNet50 INT8 (224x224, TensorRT 8.5.2) {device}: {numbers}")
    print(json.dumps(record, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    from edge_resnet.core import EdgeResnetError

    try:
        sys.exit(main())
    except EdgeResnetError as exc:
        print(f"benchmarks/tensorrt.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
