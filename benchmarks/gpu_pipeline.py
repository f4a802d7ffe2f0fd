"""GPU data path: preprocessing GPU vs CPU, PyTorch backend raw rate, pipeline on a 1080p video.

    python benchmarks/gpu_pipeline.py [--model CHECKPOINT] [--frames 300] [--json out.json]

1. Preprocessing (ImageNet spec: resize 256 + crop 224 + normalise) of 1920x1080 and 640x480
   BGR frames: the CPU path (``preprocess_batch``, Pillow) against the GPU
   (``GpuPreprocessor``): kernels alone on a frame already in device memory, H2D of the crop's
   preimage from pinned memory + kernels, and from a pageable numpy frame (the pipeline's
   case: staging copy + H2D + kernels). GPU figures are CUDA-event times, either of calls
   enqueued from Python (``gpu_*_ms``: includes launch gaps) or of the same work captured in a
   CUDA graph (``*_graph``: the GPU's own time); "host" figures are wall-clock per frame
   including Python.
2. The pytorch backend at batch 1 in FP16 with channels_last and a CUDA graph: ms per image of
   ``infer`` (pinned H2D of the input + graph replay + logits D2H) and of the graph alone.
3. The pipeline on a 1080p video with ``--preprocess gpu``: frames/s against min(decode rate,
   backend raw rate), and the stage percentiles.

Without ``--model`` a seeded random ResNet50 with 1000 classes at 224 px stands in (the speed of
a ResNet50 does not depend on its weights). Runs unchanged on a Jetson (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

from edge_resnet.core import ModelSpec
from edge_resnet.preprocessing import preprocess_batch


def _device_summary() -> Dict[str, Any]:
    from edge_resnet.cuda import get_device

    dev = get_device()
    return {"gpu": dev.name, "compute_capability": ".".join(map(str, dev.compute_capability)),
            "integrated": dev.integrated}


_BASES: Dict[Any, np.ndarray] = {}


def scene(width: int, height: int, i: int) -> np.ndarray:
    """A BGR frame: a gradient with moving shapes (compresses and resizes like a real scene)."""
    import cv2

    base = _BASES.get((width, height))
    if base is None:
        yy, xx = np.mgrid[0:height, 0:width]
        base = np.stack([(xx * 255 // (width - 1)), (yy * 255 // (height - 1)),
                         ((xx + yy) * 255 // (width + height - 2))], axis=2).astype(np.uint8)
        _BASES[(width, height)] = base
    frame = base.copy()
    r = height // 10
    cv2.circle(frame, (r + (i * 13) % (width - 2 * r), height // 2), r, (0, 0, 255), -1)
    cv2.rectangle(frame, (width // 2, (i * 7) % (height - r)), (width // 2 + r, (i * 7) % (
        height - r) + r), (255, 255, 255), -1)
    return frame


def _gpu_ms(stream: Any, fn: Callable[[], None], runs: int) -> float:
    """Mean CUDA-event milliseconds of ``fn`` (enqueued ``runs`` times back to back)."""
    from edge_resnet.cuda import Event

    for _ in range(10):
        fn()
    start, end = Event(timing=True), Event(timing=True)
    start.record(stream)
    for _ in range(runs):
        fn()
    end.record(stream)
    end.synchronize()
    return start.elapsed_ms(end) / runs


def _graph_ms(stream: Any, fn: Callable[[], None], per_graph: int = 50, launches: int = 20
              ) -> float:
    """Mean GPU milliseconds of ``fn`` with no launch gaps: ``per_graph`` calls captured into
    one CUDA graph, replayed ``launches`` times (Python's launch overhead is not counted)."""
    from edge_resnet.cuda import Event
    from edge_resnet.cuda._bindings import check, cuda_modules

    rt, _, _ = cuda_modules()
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream.cuda(), mode), "cudaStreamBeginCapture")
    for _ in range(per_graph):
        fn()
    graph = check(rt.cudaStreamEndCapture(stream.cuda()), "cudaStreamEndCapture")
    exe = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
    check(rt.cudaGraphLaunch(exe, stream.cuda()), "cudaGraphLaunch")  # warm-up
    start, end = Event(timing=True), Event(timing=True)
    start.record(stream)
    for _ in range(launches):
        check(rt.cudaGraphLaunch(exe, stream.cuda()), "cudaGraphLaunch")
    end.record(stream)
    end.synchronize()
    check(rt.cudaGraphExecDestroy(exe), "cudaGraphExecDestroy")
    check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
    return start.elapsed_ms(end) / (per_graph * launches)


def _host_ms(fn: Callable[[], None], runs: int, sync: Callable[[], None]) -> float:
    for _ in range(5):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
        sync()
    return (time.perf_counter() - t0) * 1000.0 / runs


def bench_preprocessing(spec: ModelSpec, runs: int) -> Dict[str, Any]:
    from edge_resnet.cuda import DeviceBuffer, PinnedBuffer, copy_2d_async
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    results: Dict[str, Any] = {}
    for width, height in ((1920, 1080), (640, 480)):
        frame = scene(width, height, 3)
        cpu_runs = max(10, runs // 20)
        cpu_ms = _host_ms(lambda: preprocess_batch([frame], spec, color_order="BGR"),
                          cpu_runs, lambda: None)
        with GpuPreprocessor(spec) as pre, PinnedBuffer(frame.shape, np.uint8) as pinned, \
                DeviceBuffer(frame.shape, np.uint8) as on_gpu:
            pinned.array[...] = frame
            on_gpu.upload(pinned.array, pre.stream)
            out = pre.output_buffer(1)
            s = pre.stream
            kernel = _gpu_ms(s, lambda: pre.run_device(on_gpu.ptr, height, width, width * 3,
                                                       out.ptr, "BGR"), runs)
            pinned_gpu = _gpu_ms(s, lambda: pre.run([pinned.array], out.ptr, "BGR"), runs)
            x0, y0, x1, y1 = pre._plan(height, width).plan.region
            region = DeviceBuffer(frame.shape, np.uint8)
            offset = (y0 * width + x0) * 3

            def h2d_kernels() -> None:  # only the crop's preimage crosses the bus
                copy_2d_async(region.ptr + offset, width * 3, pinned.ptr + offset, width * 3,
                              (x1 - x0) * 3, y1 - y0, s, "h2d")
                pre.run_device(region.ptr, height, width, width * 3, out.ptr, "BGR")

            kernel_graph = _graph_ms(s, lambda: pre.run_device(
                on_gpu.ptr, height, width, width * 3, out.ptr, "BGR"))
            h2d_kernel_graph = _graph_ms(s, h2d_kernels)
            region.close()
            full_h2d = _gpu_ms(s, lambda: on_gpu.upload(pinned.array, s), runs)
            pinned_host = _host_ms(lambda: pre.run([pinned.array], out.ptr, "BGR"), runs,
                                   s.synchronize)
            pageable_host = _host_ms(lambda: pre.run([frame], out.ptr, "BGR"), runs,
                                     s.synchronize)
        results[f"{width}x{height}"] = {
            "cpu_ms": cpu_ms, "cpu_fps": 1000.0 / cpu_ms,
            "gpu_kernel_ms_graph": kernel_graph,
            "gpu_h2d_region_plus_kernel_ms_graph": h2d_kernel_graph,
            "gpu_kernel_ms": kernel, "gpu_h2d_region_plus_kernel_ms": pinned_gpu,
            "region_px": [x1 - x0, y1 - y0], "gpu_full_frame_h2d_ms": full_h2d,
            "host_ms_pinned_frame": pinned_host, "host_ms_pageable_frame": pageable_host,
            "gpu_fps_pageable_frame": 1000.0 / pageable_host,
            "speedup_kernel_vs_cpu": cpu_ms / kernel,
            "speedup_h2d_kernel_vs_cpu": cpu_ms / pinned_gpu,
            "speedup_h2d_kernel_graph_vs_cpu": cpu_ms / h2d_kernel_graph,
            "speedup_host_pageable_vs_cpu": cpu_ms / pageable_host}
    return results


def bench_backend(model: Path, runs: int) -> Dict[str, Any]:
    import torch

    from edge_resnet.backends.pytorch import PyTorchBackend

    out: Dict[str, Any] = {}
    for precision in ("fp16", "fp32"):
        with PyTorchBackend(model, device="cuda", precision=precision) as backend:
            batch = preprocess_batch([scene(640, 480, 0)], backend.spec, color_order="BGR")
            infer_ms = _host_ms(lambda: backend.infer(batch), runs, lambda: None)
            graph = backend._graph(1)
            stream = backend._stream
            with torch.cuda.stream(stream):
                for _ in range(10):
                    graph.graph.replay()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record(stream)
                for _ in range(runs):
                    graph.graph.replay()
                end.record(stream)
                end.synchronize()
            out[precision] = {"infer_ms_per_image": infer_ms, "raw_fps": 1000.0 / infer_ms,
                              "graph_replay_gpu_ms": start.elapsed_time(end) / runs}
    return out


def write_video(path: Path, frames: int, width: int = 1920, height: int = 1080) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (width, height))
    for i in range(frames):
        writer.write(scene(width, height, i))
    writer.release()
    return path


def decode_fps(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n, t0 = 0, time.perf_counter()
    while cap.read()[0]:
        n += 1
    cap.release()
    return n / (time.perf_counter() - t0)


def bench_pipeline(model: Path, video: Path, raw_fps: float) -> Dict[str, Any]:
    from edge_resnet.backends.pytorch import PyTorchBackend
    from edge_resnet.runtime.telemetry import format_summary
    from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
    from edge_resnet.runtime.sources import create_source

    decode = decode_fps(video)
    with PyTorchBackend(model, device="cuda", precision="fp16") as backend:
        backend.infer_frames([scene(1920, 1080, 0)])  # capture the batch-1 graph first
        snap = Pipeline(backend, create_source(str(video)), [],
                        PipelineConfig(preprocess="gpu")).run()
    print(format_summary(snap, "pipeline, 1080p video, --preprocess gpu"), file=sys.stderr)
    bound = min(decode, raw_fps)
    return {"decode_fps": decode, "backend_raw_fps": raw_fps, "pipeline_fps": snap["fps"],
            "ratio_to_min_decode_raw": snap["fps"] / bound, "counts": snap["counts"],
            "latency_ms": snap["latency_ms"]}


def _random_checkpoint(folder: Path) -> Path:
    from edge_resnet.export.models import load_model, save_checkpoint

    loaded = load_model("random", num_classes=1000, labels=[f"c{i}" for i in range(1000)])
    path = folder / "random-resnet50-1000.pt"
    save_checkpoint(path, loaded.model, loaded.spec)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="edge-resnet checkpoint (default: random ResNet50)")
    parser.add_argument("--frames", type=int, default=300, help="1080p video length")
    parser.add_argument("--runs", type=int, default=500, help="timed iterations per figure")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    result: Dict[str, Any] = {"device": _device_summary()}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else _random_checkpoint(Path(tmp))
        result["preprocessing"] = bench_preprocessing(ModelSpec(labels=("a", "b")), args.runs)
        print(json.dumps(result["preprocessing"], indent=1), flush=True)
        result["backend"] = bench_backend(model, args.runs)
        print(json.dumps(result["backend"], indent=1), flush=True)
        video = write_video(Path(tmp) / "scene1080.mp4", args.frames)
        result["pipeline"] = bench_pipeline(model, video, result["backend"]["fp16"]["raw_fps"])
    print(json.dumps(result["pipeline"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
