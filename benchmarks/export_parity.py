"""Export time and parity numbers of `edge-resnet export`, printed (not asserted).

    python benchmarks/export_parity.py [--checkpoint CKPT] [--resolution 224] [--images DIR]

Exports a ResNet50 (random weights, or a checkpoint) unfused and fused (BGR), proves parity
against PyTorch on photos (scikit-image's, or a folder) and prints seconds, size and the numbers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np


def _photos(folder: "str | None", count: int) -> List[np.ndarray]:
    from edge_resnet.export.parity import load_check_images

    if folder:
        return load_check_images(folder, count).images
    import skimage.data as skdata

    return [getattr(skdata, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="random")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--images", default=None)
    parser.add_argument("--count", type=int, default=32)
    args = parser.parse_args()
    from edge_resnet.export.models import load_model
    from edge_resnet.export.onnx_export import export_onnx
    from edge_resnet.export.parity import check_fused_vs_unfused, check_parity

    loaded = load_model(args.checkpoint, resolution=args.resolution)
    images = _photos(args.images, args.count)
    print(f"model {loaded.source} at {loaded.spec.resolution}px, {len(images)} images")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, options in (("unfused", {}), ("fused-BGR", {"fuse_preprocessing": True})):
            started = time.perf_counter()
            result = export_onnx(loaded.model, loaded.spec, Path(tmp) / f"{name}.onnx", **options)
            paths[name] = result.path
            print(f"{name}: export {time.perf_counter() - started:.2f}s, "
                  f"{result.file_size / 1e6:.1f} MB")
            started = time.perf_counter()
            report = check_parity(loaded.model, result.path, images, loaded.spec)
            print(f"  {report.summary()} [{time.perf_counter() - started:.2f}s]")
        print("  " + check_fused_vs_unfused(paths["fused-BGR"], paths["unfused"], images).summary())


if __name__ == "__main__":
    main()
