"""``edge-resnet export``: a ResNet50 (ImageNet weights, checkpoint or random) -> proven ONNX.

A thin layer over :func:`edge_resnet.export.models.load_model` and
:func:`edge_resnet.export.parity.export_verified`. Every export is checked against PyTorch on
real images unless ``--no-check``; a failed proof exits 2 and leaves no file at ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_resnet.cli_args import add_agreement_args, add_output_args, add_report_args

__all__ = ["register", "run_export"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export a ResNet50 to ONNX with a parity proof against PyTorch",
        description="Export SOURCE (imagenet-v1, imagenet-v2, random, or a checkpoint file) to "
                    "one ONNX file (opset >= 17, BN folded, dynamic batch, spec in metadata) "
                    "and prove on images that ONNX Runtime reproduces the PyTorch logits. "
                    "Exit 2 when the proof fails; nothing is written then.")
    parser.add_argument("source", metavar="SOURCE",
                        help="imagenet-v1 | imagenet-v2 | random | path to a checkpoint")
    add_output_args(parser, "OUT.onnx", "the ONNX file to write")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="class labels, one per line, in class-index order")
    parser.add_argument("--num-classes", type=int, default=None, metavar="N",
                        help="classes of a random model (default: from --labels, else 1000)")
    parser.add_argument("--resolution", type=int, default=None, metavar="PX",
                        help="input side (default: the source's, 224 for ImageNet weights)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow checkpoints that pickle a whole module (runs their code)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    parser.add_argument("--fuse-preprocessing", action="store_true",
                        help="graph takes uint8 NHWC frames and normalises in-graph")
    parser.add_argument("--input-order", choices=("BGR", "RGB"), default="BGR",
                        help="channel order of the frames a fused graph takes (default BGR, "
                             "as OpenCV delivers)")
    parser.add_argument("--features", action="store_true",
                        help="add a second output 'features': the pooled 2048-d vector, or the "
                             "raw embedding of a checkpoint with an embedding head")
    parser.add_argument("--static-batch", action="store_true",
                        help="fix the batch dimension to 1 (default: dynamic)")
    parser.add_argument("--dla-head", action="store_true",
                        help="rewrite the head for the DLA (AveragePool + FC as 1x1 Conv, as "
                             "NVIDIA's MLPerf ResNet50), proved against the plain export")
    check = parser.add_argument_group("parity proof")
    check.add_argument("--check-data", default=None, metavar="DIR",
                       help="images for the proof (default: scikit-learn's bundled digits)")
    check.add_argument("--check-count", type=int, default=32, metavar="N",
                       help="number of images for the proof (default 32)")
    check.add_argument("--atol", type=float, default=None,
                       help="allowed max |logit difference| (default 1e-3, plus --rtol)")
    check.add_argument("--rtol", type=float, default=None,
                       help="extra allowance per unit of max |logit| (default 1e-5)")
    add_agreement_args(check, "minimum top-1 agreement of ONNX Runtime with PyTorch "
                              "(default 99)")
    check.add_argument("--no-check", action="store_true", help="skip the parity proof")
    add_report_args(parser, "FILE.json", "write the export result and parity numbers as JSON")
    parser.set_defaults(func=run_export)


def _min_agreement(args: argparse.Namespace) -> float:
    """The parity proof's agreement bound as the library takes it: a fraction (flag: percent)."""
    from edge_resnet.export import parity

    return (parity.DEFAULT_MIN_AGREEMENT if args.min_agreement is None
            else args.min_agreement / 100.0)


def run_export(args: argparse.Namespace) -> int:
    from edge_resnet.export import parity
    from edge_resnet.export.models import load_model
    from edge_resnet.io_utils import atomic_write_json

    loaded = load_model(args.source, num_classes=args.num_classes,
                        labels_file=Path(args.labels) if args.labels else None,
                        resolution=args.resolution, trust_pickle=args.trust_pickle)
    images = None
    if args.no_check:
        print("parity check skipped (--no-check): the export is unproven", file=sys.stderr)
    else:
        check = parity.load_check_images(args.check_data, args.check_count)
        images = check.images
        print(f"parity images: {check.description}")
    result, report = parity.export_verified(
        loaded.model, loaded.spec, args.out, images,
        atol=parity.DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=parity.DEFAULT_RTOL if args.rtol is None else args.rtol,
        min_top1_agreement=_min_agreement(args),
        opset=args.opset, fuse_preprocessing=args.fuse_preprocessing,
        input_color_order=args.input_order, with_features=args.features,
        dynamic_batch=not args.static_batch, weights_sha256=loaded.weights_sha256,
        source=loaded.source)
    if args.dla_head:
        _rewrite_dla_head(Path(args.out), images, args)
    spec = result.spec
    print(f"wrote {result.path} ({result.file_size / 1e6:.1f} MB, opset {result.opset}, "
          f"{result.seconds:.1f}s): {result.input_name} {result.input_shape} "
          f"{'uint8' if spec.fused_preprocessing else 'float32'} {spec.color_order} {spec.layout}"
          f" -> " + ", ".join(f"{k} {v}" for k, v in result.output_shapes.items()))
    if report is not None:
        print(report.summary())
    if args.report:
        atomic_write_json(args.report, {"export": result.to_dict(),
                                        "parity": report.to_dict() if report else None,
                                        "weights_sha256": loaded.weights_sha256,
                                        "source": loaded.source})
        print(f"report: {args.report}")
    return 0


def _rewrite_dla_head(path: Path, images: Any, args: argparse.Namespace) -> None:
    """Rewrite the proven export's head in place, proved against it (or say it is unproven).
    On failure nothing stays at --out, as for a failed export."""
    import onnx

    from edge_resnet.core import EdgeResnetError
    from edge_resnet.export import parity
    from edge_resnet.export.dla_head import prove_dla_head, rewrite_dla_head
    from edge_resnet.io_utils import atomic_path

    try:
        rewritten = rewrite_dla_head(onnx.load(str(path)))
        with atomic_path(path) as tmp:
            onnx.save(rewritten, str(tmp))
            if images is None:
                print("DLA head not proven (--no-check)", file=sys.stderr)
                return
            report = prove_dla_head(
                path, tmp, images,
                atol=parity.DEFAULT_ATOL if args.atol is None else args.atol,
                rtol=parity.DEFAULT_RTOL if args.rtol is None else args.rtol,
                min_top1_agreement=_min_agreement(args))
        print(f"DLA head: {report.summary()}")
    except EdgeResnetError:
        path.unlink()
        raise
