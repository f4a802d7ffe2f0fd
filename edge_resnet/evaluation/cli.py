"""``edge-resnet eval``: compare candidates with the FP32 reference and gate on the accuracy drop.

A thin layer over :func:`edge_resnet.evaluation.evaluate`: prints the summary table, writes the
JSON/Markdown report (and plots) where asked, and turns a breached gate (``--max-drop``,
``--max-drop-upper``, ``--min-agreement``) into exit code 1 (after the report is written, so CI
keeps the evidence).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

from edge_resnet.cli_args import (add_agreement_args, add_backend_args, add_batch_args,
                                  add_images_args, add_progress_args, add_report_args,
                                  add_seed_args, backend_options)
from edge_resnet.core import GateError, InputError

__all__ = ["register", "run_eval"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="accuracy of candidates (FP16/INT8/engines) against the FP32 reference",
        description="Run the reference and every candidate on the same images and report "
                    "top-1/top-5, the drop in points with its exact McNemar p and paired-bootstrap "
                    "95 % interval, top-1 agreement and disagreements, logit cosine and KL. "
                    "Exit code 1 when a candidate breaches a gate.")
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="image folder: one subfolder per class (named like the model's "
                             "labels or class IDs, e.g. ImageNet synsets n01440764/) or a flat "
                             "folder with --labels-file for accuracy, or plain images for "
                             "agreement only")
    parser.add_argument("--reference", required=True, metavar="[BACKEND:]MODEL",
                        help="the FP32 reference model; a BACKEND: prefix (onnxruntime:, "
                             "openvino:, tensorrt:, pytorch:) overrides --backend for it")
    parser.add_argument("--candidate", action="append", default=[], metavar="[BACKEND:]MODEL",
                        help="a model to compare (repeat for several), e.g. "
                             "tensorrt:model.int8.engine or openvino:model.int8.onnx")
    parser.add_argument("--name", action="append", default=[], metavar="NAME",
                        help="report name of each --candidate, in the same order "
                             "(default: the file name)")
    parser.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                        help="fail (exit 1) when a candidate's top-1 drops more than POINTS "
                             "percentage points (on unlabeled data: top-1 disagreement)")
    parser.add_argument("--max-drop-upper", type=float, default=None, metavar="POINTS",
                        help="fail (exit 1) when the upper end of a candidate's 95 %% "
                             "paired-bootstrap interval of the top-1 drop exceeds POINTS "
                             "(labeled data only)")
    add_agreement_args(parser, "fail (exit 1) when a candidate agrees with the reference's "
                               "top-1 on fewer than PCT of the images")
    parser.add_argument("--plots", default=None, metavar="DIR",
                        help="write PNG plots (per-class accuracy, |logit difference| "
                             "histograms) into DIR, linked from the Markdown report "
                             "(needs matplotlib)")
    add_report_args(parser, "OUT_PREFIX",
                    "write OUT_PREFIX.json and OUT_PREFIX.md (a folder: eval.json/.md)")
    add_batch_args(parser, 32)
    add_images_args(parser, None, "evaluate a deterministic random subset of this many files")
    add_seed_args(parser, 0, "seed of the --num-images subset")
    add_backend_args(parser, extra="; it runs the models without a BACKEND: prefix, and the "
                                   "report says which backend ran each model and why")
    parser.add_argument("--exact-qdq", action="store_true",
                        help="onnxruntime models only: run INT8 QDQ models as written (Q/DQ in float), the "
                             "arithmetic TensorRT reproduces, instead of ONNX Runtime's CPU INT8 "
                             "kernels (which lose accuracy on CPUs without VNNI); slower")
    parser.add_argument("--labels-file", default=None, metavar="FILE",
                        help="label map over DATA_DIR, one '<image file> <class index>' line per "
                             "image (MLPerf's ImageNet val_map.txt); only listed files are used")
    parser.add_argument("--unlabeled", action="store_true",
                        help="treat DATA_DIR as unlabeled even if it has subfolders")
    add_progress_args(parser)
    parser.set_defaults(func=run_eval)


def _candidates(args: argparse.Namespace) -> Dict[str, str]:
    paths: List[str] = list(args.candidate)
    names: List[str] = list(args.name)
    if names and len(names) != len(paths):
        raise InputError(f"got {len(names)} --name for {len(paths)} --candidate; "
                         "give one --name per --candidate or none")
    if not names:
        from edge_resnet.evaluation.evaluate import named_models

        return {name: str(path) for name, path in named_models(paths)}
    if len(set(names)) != len(names):
        raise InputError(f"--name values must be unique, got {names}")
    return dict(zip(names, paths))


def run_eval(args: argparse.Namespace) -> int:
    from edge_resnet.evaluation.evaluate import evaluate
    from edge_resnet.evaluation.gates import gate_line
    from edge_resnet.evaluation.plots import require_matplotlib, write_plots
    from edge_resnet.evaluation.report import summary_table, write_report

    if args.plots:
        require_matplotlib()  # before the evaluation, not after minutes of inference
    report = evaluate(
        args.reference, _candidates(args), args.data_dir, batch_size=args.batch_size,
        num_images=args.num_images, seed=args.seed, backend=args.backend, threads=args.threads,
        backend_options=backend_options(args),
        max_drop=args.max_drop, max_drop_upper=args.max_drop_upper,
        min_agreement=args.min_agreement, progress=args.progress,
        labeled=False if args.unlabeled else None, labels_file=args.labels_file)
    print("\n".join(summary_table(report)))
    for model in report.models:
        print(f"backend of {model.name}: {model.backend} ({model.backend_reason})",
              file=sys.stderr)
    print(f"{report.images_evaluated} images, {len(report.skipped)} skipped, "
          f"{report.images_per_second:.1f} images/s")
    print(gate_line(report))
    if args.plots:
        written = write_plots(report, args.plots)
        print("plots: " + " ".join(str(p) for p in written), file=sys.stderr)
    if args.report:
        json_path, md_path = write_report(report, args.report)
        print(f"report: {json_path} {md_path}", file=sys.stderr)
    if report.gate_passed is False:
        raise GateError("accuracy gate breached: " + "; ".join(
            f"{breach} ({breach.gate})" for breach in report.gate_breaches))
    return 0
