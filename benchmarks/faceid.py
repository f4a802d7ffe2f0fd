"""Open-set face-ID protocol on glyph identities: ArcFace embedding vs classifier features.

Trains two ResNet50s with the same recipe and data (Cyrillic/Greek glyph identities), one with
softmax cross-entropy (today's classifier features) and one with ArcFace, then measures both on
59 glyph identities neither saw (Latin letters and digits): TAR at FAR 1 % and 0.1 % with 1 and
5 enrolment photos per identity, rank-1, and the ROC table. Prints Markdown and writes JSON.

    python benchmarks/faceid.py --work /tmp/faceid [--device cuda] [--epochs 20]

``--train-set wide`` (default) trains on 911 glyph identities (the face-recognition regime: many
identities, a few dozen photos each), ``narrow`` on the 65 Cyrillic/Greek ones of earlier runs.
``--prepare-only`` writes the data and stops, so several runs (``--losses``, ``--seed``) can then
share one GPU in parallel; each writes ``faceid-results-<losses>[-d<dim>]-<set>-e<E>-s<seed>.json``.

Features are the checkpoint's pooled 2048-d vectors computed in torch with the SDK's
preprocessing (the ONNX ``features`` output of the same checkpoint agrees to ~1e-6; the tests
check the ONNX path through ``edge-resnet gallery eval``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def _features(checkpoint: Path, folder: Path, device: str) -> Dict[str, Any]:
    import torch
    from torch import nn

    from edge_resnet.export.models import load_model
    from edge_resnet.images import ImageFolder
    from edge_resnet.preprocessing import preprocess_batch

    loaded = load_model(str(checkpoint))
    model = loaded.model.eval().to(device)
    model.fc = nn.Identity()
    data = ImageFolder(folder, labeled=True)
    images, labels = [], []
    for rec, img in data.iter_images():
        images.append(img)
        labels.append(int(rec.label or 0))
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(images), 512):
            x = torch.from_numpy(preprocess_batch(images[i:i + 512], loaded.spec)).to(device)
            chunks.append(model(x).float().cpu().numpy())
    feats = np.concatenate(chunks)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return {"feats": feats.astype(np.float32), "labels": np.array(labels),
            "names": list(data.classes)}


def _trained(ckpt: Path) -> "tuple[float, float]":
    """(final validation accuracy, training seconds) recorded in an existing checkpoint."""
    from edge_resnet.export.models import load_model

    metrics = load_model(str(ckpt)).extra.get("metrics", {})
    return float(metrics.get("final_val_accuracy", float("nan"))), float(
        metrics.get("seconds", float("nan")))


def _threshold_table(trials: Dict[str, List[Dict[str, Any]]], target: float) -> str:
    """Markdown: the enrolment threshold for ``target`` FAR and what it realised on strangers
    (min-max over draws), next to the earlier best-match rule."""
    lines = [f"\nEnrolment threshold for FAR {target:g} (derived from the enrolment photos "
             "only), realised on the other photos (min-max over draws)\n",
             "| photos | resolved | FAR resolution | threshold | FAR realised | TAR | "
             "best-match rule: FAR realised | TAR |", "|---|---|---|---|---|---|---|---|"]
    for k, rows in trials.items():
        def span(key: str) -> str:
            vals = [r[key] for r in rows]
            return f"{min(vals):.4f}-{max(vals):.4f}"
        lines.append(f"| {k} | {all(r['resolved'] for r in rows)} | "
                     f"{rows[0]['far_resolution']:.4f} | {span('threshold')} | {span('far')} | "
                     f"{span('tar')} | {span('best_match_rule_far')} | "
                     f"{span('best_match_rule_tar')} |")
    return "\n".join(lines)


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-per-identity", type=int, default=40)
    parser.add_argument("--eval-per-identity", type=int, default=24)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--losses", default="ce,arcface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dump-features", action="store_true",
                        help="also save the eval features per model (.npz) for analysis")
    parser.add_argument("--arcface-margin", type=float, default=0.1)
    parser.add_argument("--arcface-scale", type=float, default=16.0)
    parser.add_argument("--arcface-warmup", type=int, default=5)
    parser.add_argument("--embedding-dim", type=int, default=None,
                        help="embedding head width (default: 512 for arcface, none for ce; "
                             "0: none)")
    parser.add_argument("--embedding-dropout", type=float, default=0.0)
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate a checkpoint of the same recipe already in --work "
                             "instead of training it again")
    parser.add_argument("--target-far", type=float, default=0.01,
                        help="FAR the enrolment threshold is derived for (threshold trials)")
    parser.add_argument("--train-set", choices=("wide", "narrow"), default="wide",
                        help="wide: 911 training identities; narrow: the 65 Cyrillic/Greek ones")
    parser.add_argument("--fonts", type=Path, default=None,
                        help="folder of the DejaVu .ttf files (default: fontconfig's)")
    parser.add_argument("--render-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prepare-only", action="store_true", help="write the data and stop")
    parser.add_argument("--log-epochs", action="store_true", help="log every epoch to stderr")
    args = parser.parse_args(argv)
    if args.log_epochs:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from edge_resnet.datasets.glyphs import (EVAL_GLYPHS, TRAIN_GLYPHS, WIDE_TRAIN_GLYPHS,
                                             write_glyph_folder)
    from edge_resnet.training.finetune import finetune
    from edge_resnet.training.options import LossOptions
    from edge_resnet.faceid.openset import (enrolment_threshold_trials, evaluate_open_set,
                                            format_report, report)

    fonts = sorted(args.fonts.glob("DejaVu*.ttf")) if args.fonts else None
    wide = args.train_set == "wide"
    prefix = "glyphs-wide-" if wide else "glyphs-"
    train_dir = args.work / f"{prefix}train-{args.train_per_identity}-{args.size}"
    eval_dir = args.work / f"glyphs-eval-{args.eval_per_identity}-{args.size}"
    write_glyph_folder(train_dir, WIDE_TRAIN_GLYPHS if wide else TRAIN_GLYPHS,
                       args.train_per_identity, args.size, seed=1, fonts=fonts,
                       workers=args.render_workers)
    write_glyph_folder(eval_dir, EVAL_GLYPHS, args.eval_per_identity, args.size, seed=2,
                       fonts=fonts, workers=args.render_workers)
    if args.prepare_only:
        return 0
    results: Dict[str, Any] = {}
    for loss in args.losses.split(","):
        options = LossOptions(loss, args.arcface_margin, args.arcface_scale,
                              args.arcface_warmup, args.embedding_dim, args.embedding_dropout)
        tag = "-".join(f"{k}{v}" for k, v in options.recipe().items() if k != "embedding")
        ckpt = args.work / f"{prefix}{tag}-e{args.epochs}-s{args.seed}.pt"
        started = time.perf_counter()
        if args.reuse and ckpt.is_file():
            val_acc, seconds = _trained(ckpt)
        else:
            fit = finetune(train_dir, ckpt, resolution=args.size, resize=None,
                           epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, init="scratch", progress=False,
                           threads=args.threads, device=args.device, loss=options)
            val_acc, seconds = fit.final_val_accuracy, time.perf_counter() - started
        data = _features(ckpt, eval_dir, args.device)
        if args.dump_features:
            np.savez(ckpt.with_suffix(".eval-features.npz"), feats=data["feats"],
                     labels=data["labels"], names=np.array(data["names"]))
        scores = evaluate_open_set(data["feats"], data["labels"], data["names"], (1, 5),
                                   args.draws, args.seed)
        rep = report(scores, (0.01, 0.001), {**options.recipe(), "checkpoint": str(ckpt),
                                              "train_seconds": round(seconds, 1),
                                              "val_accuracy_seen_identities": val_acc})
        rep["enrolment_threshold"] = {
            str(k): enrolment_threshold_trials(data["feats"], data["labels"], k, args.draws,
                                               args.seed, args.target_far) for k in (1, 5)}
        results[loss] = rep
        print(f"\n## {loss}: trained {seconds:.0f}s, val accuracy (seen identities) "
              f"{val_acc:.4f}\n")
        print(format_report(rep))
        print(_threshold_table(rep["enrolment_threshold"], args.target_far), flush=True)
    print("\n## TAR at FAR on unseen identities\n\n| loss | photos | TAR@FAR 1% | TAR@FAR 0.1% "
          "| rank-1 |\n|---|---|---|---|---|")
    for loss, rep in results.items():
        for s in rep["sizes"]:
            t1, t01 = s["tar_at_far"]
            print(f"| {loss} | {s['photos']} | {t1['tar']:.3f} | {t01['tar']:.3f} | "
                  f"{s['rank1']:.3f} |")
    for rep in results.values():
        for s in rep["sizes"]:
            s.pop("curve", None)
    dim = "" if args.embedding_dim is None else f"-d{args.embedding_dim}"
    name = (f"faceid-results-{args.losses.replace(',', '+')}{dim}-{args.train_set}-"
            f"e{args.epochs}-s{args.seed}")
    (args.work / f"{name}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
