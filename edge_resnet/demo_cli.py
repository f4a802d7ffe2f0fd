"""``edge-resnet demo``: the whole host pipeline on bundled data, offline, in a few minutes.

Imports nothing heavy at module level so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_resnet.cli_args import (add_output_args, add_progress_args, add_seed_args,
                                  add_threads_args, progress_enabled)
from edge_resnet.training.options import INIT_CHOICES

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="digits -> fine-tuned ResNet50 -> proven ONNX -> FP16/INT8 -> accuracy report",
        description="Write scikit-learn's bundled digits as an image folder, fine-tune ResNet50 "
                    "at 32x32 on CPU, export FP32 ONNX (plain and with uint8 BGR preprocessing "
                    "in the graph) with parity proofs, calibrate FP16 and INT8 (minmax, "
                    "entropy, percentile, mse), and evaluate every precision against FP32; "
                    "everything goes under --out. No download needed.")
    add_output_args(p, "DIR", "output folder")
    p.add_argument("--epochs", type=int, default=8, help="fine-tune epochs (default 8)")
    add_seed_args(p)
    p.add_argument("--init", choices=INIT_CHOICES, default="scratch",
                   help="starting weights (default scratch: same everywhere)")
    add_threads_args(p, "torch threads for training (default: all cores; use 1 when the "
                        "machine is busy with other work)")
    add_progress_args(p)
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the FP16/INT8 calibration stage")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.demo import format_summary, run_demo

    result = run_demo(Path(args.out), epochs=args.epochs, seed=args.seed, init=args.init,
                      calibrate=not args.no_calibrate,
                      threads=args.threads, progress=progress_enabled(args))
    print(format_summary(result))
    return 0
