"""``edge-resnet finetune``: train a ResNet50 on an image folder into an edge-resnet checkpoint.

Imports nothing heavy at module level so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_resnet.training.options import INIT_CHOICES, LOSS_CHOICES

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune ResNet50 on a labeled image folder",
        description="Fine-tune ResNet50 on DATA_DIR (one subfolder per class) with AdamW and a "
                    "one-cycle schedule; writes a checkpoint carrying labels, preprocessing and "
                    "the recipe.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--resolution", type=int, default=224, help="network input side (default 224)")
    p.add_argument("--resize", type=int, default=None,
                   help="shorter side before the centre crop (default: plain resize)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=INIT_CHOICES,
                   default="auto",
                   help="starting weights; auto = ImageNet V1 if in the torch hub cache, else "
                        "scratch (the choice is logged and stored in the checkpoint)")
    p.add_argument("--test-dir", type=Path, default=None,
                   help="labeled folder scored once at the end")
    p.add_argument("--no-augment", action="store_true", help="disable random shifts")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: all cores; use 1 when the machine is busy "
                        "with other work)")
    p.add_argument("--loss", choices=LOSS_CHOICES, default="ce",
                   help="ce: softmax classifier (default); arcface: additive angular margin on "
                        "the L2-normalised pooled features, an embedding made for galleries "
                        "(export it with --features)")
    p.add_argument("--arcface-margin", type=float, default=0.1,
                   help="arcface: angular margin in radians (default 0.1)")
    p.add_argument("--arcface-scale", type=float, default=16.0,
                   help="arcface: logit scale s (default 16)")
    p.add_argument("--arcface-warmup", type=int, default=5,
                   help="arcface: epochs over which the margin ramps up from 0 (default 5)")
    p.add_argument("--device", default="cpu",
                   help="train on cpu (default), cuda or cuda:N (refused if there is no GPU)")
    p.add_argument("--workers", type=int, default=0,
                   help="threads decoding images before training (default: none)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.training.finetune import finetune
    from edge_resnet.training.options import LossOptions

    result = finetune(args.data_dir, args.out, resolution=args.resolution, resize=args.resize,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, val_fraction=args.val_fraction,
                      seed=args.seed, init=args.init, test_dir=args.test_dir,
                      augment=not args.no_augment, threads=args.threads,
                      workers=args.workers, progress=sys.stderr.isatty(),
                      loss=LossOptions(args.loss, args.arcface_margin, args.arcface_scale,
                                       args.arcface_warmup),
                      device=args.device)
    test = "" if result.test_accuracy is None else f", test accuracy {result.test_accuracy:.4f}"
    print(f"{result.checkpoint}: init={result.init}, {result.epochs} epochs, loss={args.loss}, "
          f"val accuracy {result.final_val_accuracy:.4f}{test}, {result.seconds:.0f}s "
          f"({result.num_train} train / {result.num_val} val images, {result.skipped} skipped)")
    return 0
