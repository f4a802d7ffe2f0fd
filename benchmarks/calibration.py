"""Calibration speed on this machine: statistics pass, range methods, INT8 vs FP32 latency.

Model: torchvision ResNet50 at 224x224 with seeded random weights (ImageNet weights cannot be
downloaded here), exported by edge-resnet (BN folded). Images: 512 random crops/flips of
scikit-image's bundled photos (astronaut, coffee, chelsea, rocket, ...), written as JPEGs so the
timing includes decoding and the 256-resize + 224-crop preprocessing.

    python benchmarks/calibration.py [--images 512] [--threads 2] [--work DIR]

Prints: statistics-pass time, range time per method (all four from that one pass), QDQ build
time, and ONNX Runtime CPU latency at batch 1 of the FP32 and the INT8 QDQ model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np


def _photos() -> List[np.ndarray]:
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
             "retina", "cat", "colorwheel", "logo"]
    out = []
    for name in names:
        image = getattr(data, name, None)
        if image is None:
            continue
        arr = np.asarray(image())
        if arr.ndim == 3 and arr.shape[2] >= 3:
            out.append(arr[:, :, :3].astype(np.uint8))
    return out


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _photos()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[y:y + side, x:x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i:04d}.jpg", quality=92)


def export_model(path: Path) -> None:
    import torch
    import torchvision

    from edge_resnet.core import ModelSpec
    from edge_resnet.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=1000).eval()
    spec = ModelSpec(labels=tuple(f"class{i}" for i in range(1000)), resolution=224, resize=256)
    export_onnx(model, spec, path)


def latency(path: Path, threads: int, runs: int = 40) -> Dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(5):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times)) - 1]}


def main() -> None:
    from edge_resnet.calibration.methods import MethodOptions, compute_ranges, method_names
    from edge_resnet.calibration.qdq import QdqOptions, build_qdq, save_model
    from edge_resnet.calibration.readers import ReaderOptions, open_reader
    from edge_resnet.calibration.stats import collect_stats, load_onnx
    from edge_resnet.core import ModelSpec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edge-resnet-bench-"))
    model_path, images = work / "resnet50_224.onnx", work / "images"
    if not model_path.is_file():
        export_model(model_path)
    if not images.is_dir():
        write_images(images, args.images)
    model = load_onnx(model_path)
    spec = ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})
    reader = open_reader(images, spec, ReaderOptions(args.images, 0, args.batch_size))
    start = time.perf_counter()
    stats = collect_stats(model, reader, threads=args.threads, total=reader.expected_images())
    pass_s = time.perf_counter() - start
    print(f"work folder: {work}")
    print(f"statistics pass: {reader.images_used} images at 224x224, {len(stats.tensors)} "
          f"tensors, {pass_s:.1f} s ({1000 * pass_s / reader.images_used:.0f} ms/image, "
          f"decode + preprocess + ORT FP32 ({args.threads} threads) + histograms)")
    ranges = {}
    for method in method_names():
        start = time.perf_counter()
        ranges[method] = compute_ranges(stats, method, MethodOptions())
        print(f"  ranges {method:10s}: {time.perf_counter() - start:6.2f} s for "
              f"{len(ranges[method])} tensors")
    start = time.perf_counter()
    qdq_path = save_model(build_qdq(model, ranges["entropy"], QdqOptions(method="entropy")),
                          work / "resnet50_224.int8.entropy.onnx")
    print(f"QDQ build + TensorRT-rule check + write: {time.perf_counter() - start:.1f} s")
    fp32 = latency(model_path, args.threads)
    int8 = latency(qdq_path, args.threads)
    print(f"ONNX Runtime CPU latency, batch 1, {args.threads} threads:")
    print(f"  FP32      median {fp32['median_ms']:7.1f} ms  p90 {fp32['p90_ms']:7.1f} ms")
    print(f"  INT8 QDQ  median {int8['median_ms']:7.1f} ms  p90 {int8['p90_ms']:7.1f} ms  "
          f"({fp32['median_ms'] / int8['median_ms']:.2f}x of FP32 speed)")
    print("  note: the QDQ model is made for TensorRT (symmetric s8 activations and weights); "
          "ONNX Runtime's x86 CPU path for s8s8 is known to be slow, so CPU latency says "
          "nothing about Jetson speed.")


if __name__ == "__main__":
    main()
