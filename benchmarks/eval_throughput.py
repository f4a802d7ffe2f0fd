"""Evaluation throughput: images/s of ``edge_resnet.evaluation.evaluate`` on a folder.

    python benchmarks/eval_throughput.py MODEL.onnx DATA_DIR [--copies 1] [--batch-size 32]

Runs the model as reference plus ``--copies`` candidates (the same file), as a calibration
comparison does, and prints the whole-evaluation rate (decode + preprocess + every model) and
each model's inference-only rate. The first run warms the OS file cache and is not reported.
"""

from __future__ import annotations

import argparse
import time

from edge_resnet.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("--copies", type=int, default=1, help="candidates (copies of the model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    candidates = {f"copy{i}": args.model for i in range(args.copies)}
    evaluate(args.model, candidates, args.data_dir, batch_size=args.batch_size,
             threads=args.threads, progress=False)  # warm-up
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = evaluate(args.model, candidates, args.data_dir, batch_size=args.batch_size,
                          threads=args.threads, progress=False)
        rates.append(report.images_evaluated / (time.perf_counter() - start))
    models = 1 + args.copies
    print(f"images: {report.images_evaluated}, models: {models}, batch: {args.batch_size}")
    print(f"evaluate: best {max(rates):.1f} images/s ({max(rates) * models:.1f} model-images/s), "
          f"runs {', '.join(f'{r:.1f}' for r in rates)}")
    for m in report.models:
        print(f"  {m.name}: inference only {report.images_evaluated / m.infer_seconds:.1f} img/s")


if __name__ == "__main__":
    main()
