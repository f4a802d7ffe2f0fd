"""Pipeline FPS versus the backend's raw batch-1 rate, and preprocessing cost per frame.

Writes a 640x480 video with OpenCV (moving shapes over a gradient, mp4v), then in one process:
1. raw bs1 inference rate of MODEL on BACKEND (preprocessed input, nothing else running);
2. end-to-end pipeline FPS on the video (capture + decode + preprocess + infer + postprocess);
3. raw rate again (the machine is shared: the two raw runs bracket the pipeline run);
4. preprocessing ms/frame on the decoded frames: the SDK definition (resize + crop + normalise
   to float NCHW) and, for a fused-preprocessing graph, only resize + crop to uint8.

    python benchmarks/runtime.py MODEL [--fused-model FUSED] [--backend openvino] [--threads 2]

Prints the numbers (and JSON with --json). The target is pipeline FPS >= 90 % of the raw rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge_resnet.backends import load_backend
from edge_resnet.core import ModelSpec
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.bench import sample_batch, time_inference
from edge_resnet.runtime.metrics import format_summary
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
    result: Dict[str, Any] = {"model": args.model, "backend": args.backend,
                              "threads": args.threads, "frames": args.frames}
    with load_backend(args.backend, args.model, threads=args.threads) as backend:
        result["precision"] = backend.info.precision
        before = raw_rate(backend, args.runs)
        snap = Pipeline(backend, create_source(str(video)), [],
                        PipelineConfig(max_batch=1)).run()
        after = raw_rate(backend, args.runs)
        spec = backend.spec
    result.update(raw_bs1_fps_before=before, raw_bs1_fps_after=after,
                  raw_bs1_fps=(before + after) / 2, pipeline_fps=snap["fps"],
                  pipeline_counts=snap["counts"], pipeline_latency_ms=snap["latency_ms"])
    result["ratio"] = result["pipeline_fps"] / result["raw_bs1_fps"]
    frames = decoded_frames(video, 100)
    unfused = spec.with_changes(fused_preprocessing=False)
    fused = spec.with_changes(fused_preprocessing=True, input_color_order="BGR")
    result["preprocess_ms_per_frame"] = {"sdk_normalised_float": preprocess_ms(frames, unfused),
                                         "fused_in_graph_resize_only": preprocess_ms(frames, fused)}
    print(format_summary(snap, f"pipeline {Path(args.model).name} on {args.backend}"),
          file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--fused-model", help="the same network with fused preprocessing")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_scene_video(Path(tmp) / "scene.mp4", args.frames)
        for model in [args.model] + ([args.fused_model] if args.fused_model else []):
            args.model = model
            results.append(measure(args, video))
    for r in results:
        pre = r["preprocess_ms_per_frame"]
        print(f"{Path(r['model']).name} [{r['precision']}] on {r['backend']} "
              f"({r['threads']} threads): raw bs1 {r['raw_bs1_fps']:.1f} img/s "
              f"(before {r['raw_bs1_fps_before']:.1f}, after {r['raw_bs1_fps_after']:.1f}), "
              f"pipeline {r['pipeline_fps']:.1f} FPS on {r['frames']} 640x480 frames -> "
              f"{100 * r['ratio']:.1f} % | preprocess/frame: normalised float "
              f"{pre['sdk_normalised_float']:.2f} ms, fused resize-only "
              f"{pre['fused_in_graph_resize_only']:.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
