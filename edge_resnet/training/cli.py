"""``edge-resnet finetune``: train a ResNet50 on an image folder into an edge-resnet checkpoint.

Imports nothing heavy at module level so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_resnet.cli_args import (add_batch_args, add_output_args, add_progress_args,
                                  add_seed_args, add_threads_args, progress_enabled)
from edge_resnet.training.options import INIT_CHOICES, LOSS_CHOICES, LossOptions

__all__ = ["register"]


def register(subparsers: Any) -> None:
    loss = LossOptions()  # the library's loss defaults are the CLI's
    p = subparsers.add_parser(
        "finetune", help="fine-tune ResNet50 on a labeled image folder",
        description="Fine-tune ResNet50 on DATA_DIR (one subfolder per class) with AdamW and a "
                    "one-cycle schedule; writes a checkpoint carrying labels, preprocessing and "
                    "the recipe.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    add_output_args(p, "CKPT", "checkpoint to write")
    p.add_argument("--resolution", type=int, default=224, metavar="PX",
                   help="network input side (default 224)")
    p.add_argument("--resize", type=int, default=None,
                   help="shorter side before the centre crop (default: plain resize)")
    p.add_argument("--epochs", type=int, default=8)
    add_batch_args(p, 64, "training images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--val-fraction", type=float, default=0.1)
    add_seed_args(p)
    p.add_argument("--init", choices=INIT_CHOICES,
                   default="auto",
                   help="starting weights; auto = ImageNet V1 if in the torch hub cache, else "
                        "scratch (the choice is logged and stored in the checkpoint)")
    p.add_argument("--test-dir", type=Path, default=None,
                   help="labeled folder scored once at the end")
    p.add_argument("--no-augment", action="store_true", help="disable random shifts")
    add_threads_args(p, "torch threads (default: all cores; use 1 when the machine is busy "
                        "with other work)")
    add_progress_args(p)
    p.add_argument("--loss", choices=LOSS_CHOICES, default=loss.name,
                   help="ce: softmax classifier (default); arcface: additive angular margin on "
                        "an L2-normalised embedding (a 512-d head by default, --embedding-dim), "
                        "made for galleries (export it with --features)")
    p.add_argument("--arcface-margin", type=float, default=loss.margin,
                   help="arcface: angular margin in radians (default %(default)s)")
    p.add_argument("--arcface-scale", type=float, default=loss.scale,
                   help="arcface: logit scale s (default %(default)s)")
    p.add_argument("--arcface-warmup", type=int, default=loss.warmup_epochs,
                   help="arcface: epochs over which the margin ramps up from 0 "
                        "(default %(default)s)")
    p.add_argument("--embedding-dim", type=int, default=None, metavar="N",
                   help="embedding head (BN, dropout, FC 2048->N, BN) before the classifier; "
                        "0: none, the pooled 2048-d features (default: 512 for arcface, none "
                        "for ce)")
    p.add_argument("--device", default="cpu",
                   help="train on cpu (default), cuda or cuda:N (refused if there is no GPU)")
    p.add_argument("--workers", type=int, default=0,
                   help="threads decoding images before training (default: none)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.training.finetune import finetune

    result = finetune(args.data_dir, Path(args.out), resolution=args.resolution, resize=args.resize,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, val_fraction=args.val_fraction,
                      seed=args.seed, init=args.init, test_dir=args.test_dir,
                      augment=not args.no_augment, threads=args.threads,
                      workers=args.workers, progress=progress_enabled(args),
                      loss=LossOptions(args.loss, args.arcface_margin, args.arcface_scale,
                                       args.arcface_warmup, args.embedding_dim),
                      device=args.device)
    test = "" if result.test_accuracy is None else f", test accuracy {result.test_accuracy:.4f}"
    print(f"{result.checkpoint}: init={result.init}, {result.epochs} epochs, loss={args.loss}, "
          f"val accuracy {result.final_val_accuracy:.4f}{test}, {result.seconds:.0f}s "
          f"({result.num_train} train / {result.num_val} val images, {result.skipped} skipped)")
    return 0
