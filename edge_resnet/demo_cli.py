"""``edge-resnet demo``: the whole host pipeline on bundled data, offline, in a few minutes.

Imports nothing heavy at module level so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="digits -> fine-tuned ResNet50 -> proven ONNX -> FP16/INT8 -> accuracy report",
        description="Write scikit-learn's bundled digits as an image folder, fine-tune ResNet50 "
                    "at 32x32 on CPU, export FP32 ONNX (plain and with uint8 BGR preprocessing "
                    "in the graph) with parity proofs, calibrate FP16 and INT8 (minmax, "
                    "entropy, percentile, mse), and evaluate every precision against FP32; "
                    "everything goes under --out. No download needed.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--epochs", type=int, default=8, help="fine-tune epochs (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("scratch", "auto", "imagenet-v1", "imagenet-v2"),
                   default="scratch", help="starting weights (default scratch: same everywhere)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for training (default: all cores; use 1 when the "
                        "machine is busy with other work)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the FP16/INT8 calibration stage")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.demo import format_summary, run_demo

    result = run_demo(args.out, epochs=args.epochs, seed=args.seed, init=args.init,
                      calibrate=not args.no_calibrate,
                      threads=args.threads, progress=sys.stderr.isatty())
    print(format_summary(result))
    return 0
