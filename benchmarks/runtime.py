"""Pipeline FPS versus the backend's raw batch-1 rate, and preprocessing cost per frame.

Writes a 640x480 video with OpenCV (moving shapes over a gradient, mp4v), then in one process:
1. raw bs1 inference rate of MODEL on BACKEND (preprocessed input, nothing else running);
2. end-to-end pipeline FPS on the video (capture + decode + preprocess + infer + postprocess);
3. raw rate again: each pipeline run is bracketed by two raw runs, for ``--rounds`` rounds,
   and the median ratio is reported (the machine may be shared and its load drifts);
4. preprocessing ms/frame on the decoded frames: the SDK definition (resize + crop + normalise
   to float NCHW) and, for a fused-preprocessing graph, only resize + crop to uint8.

    python benchmarks/runtime.py MODEL [--fused-model FUSED] [--backend openvino] [--threads 2]

Prints the numbers (and JSON with --json). The target is pipeline FPS >= 90 % of the raw rate.

``--compare-tree OLD`` measures two SDK trees in one run: this script runs one round at a time
in a child process with ``PYTHONPATH=OLD`` and then with this checkout (order swapped every
round, so drift of a shared machine's load hits both alike), and prints each tree's medians and
the ratio new/old of the raw rate and of the pipeline FPS (e.g. ``git worktree add
/tmp/before HEAD~1``; the child uses only API both trees have).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge_resnet.backends import load_backend
from edge_resnet.core import ModelSpec
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.timing import sample_batch, time_inference
from edge_resnet.runtime.telemetry import format_summary
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
from edge_resnet.runtime.sources import create_source


def write_scene_video(path: Path, frames: int, fps: float = 30.0) -> Path:
    """A 640x480 mp4v video of moving shapes over a gradient (compresses like a real scene)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 480))
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([(xx * 255 // 639), (yy * 255 // 479), ((xx + yy) * 255 // 1118)], axis=2)
    for i in range(frames):
        frame = base.astype(np.uint8).copy()
        cv2.circle(frame, (40 + (i * 7) % 560, 240), 50, (0, 0, 255), -1)
        cv2.rectangle(frame, (300, 40 + (i * 5) % 380), (380, 100 + (i * 5) % 380),
                      (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def decoded_frames(path: Path, count: int) -> List[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def preprocess_ms(frames: List[np.ndarray], spec: ModelSpec) -> float:
    """Mean ms per frame of the pipeline's preprocessing call for this spec (BGR frames)."""
    for frame in frames[:3]:
        preprocess_batch([frame], spec, color_order="BGR")
    t0 = time.perf_counter()
    for frame in frames:
        preprocess_batch([frame], spec, color_order="BGR")
    return (time.perf_counter() - t0) * 1000.0 / len(frames)


def raw_rate(backend: Any, runs: int) -> float:
    times = time_inference(backend, sample_batch(backend, 1), runs, warmup=5)
    return 1000.0 / float(np.mean(times))


def measure(args: argparse.Namespace, video: Path) -> Dict[str, Any]:
    """Alternate raw-rate and pipeline runs ``--rounds`` times; each pipeline run is compared
    with the mean of the raw runs just before and after it (the machine may be shared, so
    the load drifts), and the median ratio is reported with every round's numbers."""
    result: Dict[str, Any] = {"model": args.model, "backend": args.backend,
                              "threads": args.threads, "frames": args.frames,
                              "io_niceness": args.io_niceness, "pipeline_batch": args.batch}
    rounds: List[Dict[str, float]] = []
    with load_backend(args.backend, args.model, threads=args.threads) as backend:
        result["precision"] = backend.info.precision
        raw = [raw_rate(backend, args.runs)]
        for _ in range(args.rounds):
            snap = Pipeline(backend, create_source(str(video)), [],
                            PipelineConfig(max_batch=args.batch, max_wait_ms=args.max_wait_ms,
                                           io_niceness=args.io_niceness)).run()
            raw.append(raw_rate(backend, args.runs))
            bracket = (raw[-2] + raw[-1]) / 2
            rounds.append({"raw_bs1_fps": bracket, "pipeline_fps": snap["fps"],
                           "ratio": snap["fps"] / bracket})
        spec = backend.spec
    result["rounds"] = rounds
    for key in ("raw_bs1_fps", "pipeline_fps", "ratio"):
        result[key] = float(np.median([r[key] for r in rounds]))
    result.update(pipeline_counts=snap["counts"], pipeline_latency_ms=snap["latency_ms"])
    frames = decoded_frames(video, 100)
    unfused = spec.with_changes(fused_preprocessing=False, color_order="RGB", layout="NCHW")
    fused = spec.with_changes(fused_preprocessing=True, color_order="BGR", layout="NHWC")
    result["preprocess_ms_per_frame"] = {"sdk_normalised_float": preprocess_ms(frames, unfused),
                                         "fused_in_graph_resize_only": preprocess_ms(frames, fused)}
    print(format_summary(snap, f"last pipeline run, {Path(args.model).name} on {args.backend}"),
          file=sys.stderr)
    return result


def _child(tree: Path, args: argparse.Namespace, video: Path, out: Path) -> Dict[str, Any]:
    """One round of this script on ``tree``'s SDK (a child process, its own imports)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), args.model, "--backend", args.backend,
           "--threads", str(args.threads), "--runs", str(args.runs), "--rounds", "1",
           "--batch", str(args.batch), "--max-wait-ms", str(args.max_wait_ms),
           "--io-niceness", str(args.io_niceness), "--video", str(video), "--json", str(out)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    result: Dict[str, Any] = json.loads(out.read_text())[0]
    return result


def compare_trees(args: argparse.Namespace, video: Path, tmp: Path) -> int:
    """Alternate rounds between ``--compare-tree`` (old) and this checkout (new)."""
    trees = {"old": Path(args.compare_tree).resolve(), "new": Path(__file__).resolve().parents[1]}
    rounds: Dict[str, List[Dict[str, Any]]] = {"old": [], "new": []}
    for i in range(args.rounds):
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            r = _child(trees[name], args, video, tmp / f"{name}{i}.json")
            rounds[name].append(r)
            print(f"round {i + 1} {name}: raw bs1 {r['raw_bs1_fps']:.1f} img/s, pipeline "
                  f"{r['pipeline_fps']:.1f} FPS", file=sys.stderr)
    med = {name: {key: float(np.median([r[key] for r in rs]))
                  for key in ("raw_bs1_fps", "pipeline_fps")} for name, rs in rounds.items()}
    print(f"{Path(args.model).name} on {args.backend} ({args.threads} threads, pipeline batch "
          f"{args.batch}), medians of {args.rounds} alternated rounds:")
    for name in ("old", "new"):
        print(f"  {name} ({trees[name]}): raw bs1 {med[name]['raw_bs1_fps']:.1f} img/s, "
              f"pipeline {med[name]['pipeline_fps']:.1f} FPS")
    for key, label in (("raw_bs1_fps", "raw bs1"), ("pipeline_fps", "pipeline")):
        print(f"  new/old {label}: {med['new'][key] / med['old'][key]:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()},
                                               "medians": med, "rounds": rounds},
                                              indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--fused-model", help="the same network with fused preprocessing")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150, help="video length (frames)")
    parser.add_argument("--runs", type=int, default=50, help="timed bs1 inferences per raw run")
    parser.add_argument("--rounds", type=int, default=5, help="pipeline runs, each bracketed "
                        "by raw runs")
    parser.add_argument("--batch", type=int, default=1,
                        help="pipeline max batch (the raw rate stays batch 1)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--io-niceness", type=int, default=PipelineConfig().io_niceness,
                        help="priority step of capture/preprocess threads below inference")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--video", help="use this video instead of writing a scene video")
    parser.add_argument("--compare-tree", metavar="OLD",
                        help="another checkout of the SDK: alternate rounds old/new, print both "
                        "and the ratio")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else \
            write_scene_video(Path(tmp) / "scene.mp4", args.frames)
        if args.compare_tree:
            return compare_trees(args, video, Path(tmp))
        for model in [args.model] + ([args.fused_model] if args.fused_model else []):
            args.model = model
            results.append(measure(args, video))
    for r in results:
        pre = r["preprocess_ms_per_frame"]
        per_round = ", ".join(f"{100 * x['ratio']:.0f}%" for x in r["rounds"])
        print(f"{Path(r['model']).name} [{r['precision']}] on {r['backend']} "
              f"({r['threads']} threads), medians of {len(r['rounds'])} rounds: raw bs1 "
              f"{r['raw_bs1_fps']:.1f} img/s, pipeline {r['pipeline_fps']:.1f} FPS on "
              f"{r['frames']} 640x480 frames (pipeline batch {r['pipeline_batch']}) -> "
              f"{100 * r['ratio']:.1f} % (rounds: {per_round})"
              f" | preprocess/frame: normalised float "
              f"{pre['sdk_normalised_float']:.2f} ms, fused resize-only "
              f"{pre['fused_in_graph_resize_only']:.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
