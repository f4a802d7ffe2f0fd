"""``edge-resnet calibrate`` and ``edge-resnet check-qdq``: thin layers over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List

from edge_resnet.calibration.options import CALIBRATORS, METHODS, CalibrationOptions
from edge_resnet.cli_args import (add_batch_args, add_images_args, add_output_args,
                                  add_progress_args, add_seed_args, add_threads_args)
from edge_resnet.core import InputError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    _OPTS = CalibrationOptions()  # the library's defaults are the CLI's (numpy, no ONNX/torch)
    cal = subparsers.add_parser(
        "calibrate", help="INT8 (QDQ ONNX + TensorRT cache), FP16 and mixed precision",
        description="One statistics pass over DATA (image folder, video or list file), then "
                    "ranges per method, a TensorRT-ready QDQ ONNX, a TensorRT calibration "
                    "cache and a JSON of ranges per method, in --out.")
    cal.add_argument("model", type=Path, help="FP32 ONNX exported by `edge-resnet export`")
    cal.add_argument("data", nargs="?", type=Path,
                     help="calibration images: folder, video file or .txt list of paths "
                          "(optional when --stats exists)")
    add_output_args(cal, "DIR", "output folder")
    cal.add_argument("--method", default=_OPTS.methods[0], choices=("auto", *METHODS, "all"),
                     help="range method; auto (default) scores every method on calibration "
                          "images held out of the statistics and keeps the one that agrees "
                          "best with FP32; all writes every method")
    cal.add_argument("--percentile", type=float, default=_OPTS.ranges.percentile,
                     help="for --method percentile")
    add_images_args(cal, _OPTS.reader.num_images, "calibration images read from DATA")
    add_seed_args(cal, _OPTS.reader.seed, "seed of the image sample")
    add_batch_args(cal, _OPTS.reader.batch_size)
    cal.add_argument("--frame-stride", type=int, default=_OPTS.reader.frame_stride,
                     help="video: use every N-th frame")
    cal.add_argument("--stats", type=Path, help="statistics .npz: reused if it exists, "
                                                "written there otherwise")
    cal.add_argument("--trt-version", default=str(_OPTS.cache.trt_version),
                     help="TensorRT version of the cache header, e.g. 8502, 8.6.1, 10.3.0")
    cal.add_argument("--cache-calibrator", default=_OPTS.cache.calibrator,
                     choices=tuple(CALIBRATORS),
                     help="TensorRT calibrator class that will read the cache (its header must "
                          "name it or TensorRT ignores the file): entropy2 = "
                          "IInt8EntropyCalibrator2, what trtexec --calib uses (default)")
    cal.add_argument("--fp16", action="store_true", help="also write an FP16 ONNX")
    cal.add_argument("--fp16-io", action="store_true",
                     help="FP16 model takes/returns float16 (default: float32 IO)")
    cal.add_argument("--quantize-fc", action="store_true", help="quantize the classifier too")
    cal.add_argument("--eval-data", type=Path, help="labeled held-out folder: top-1 per model")
    cal.add_argument("--max-drop", type=float, metavar="POINTS",
                     help="accuracy-aware mode: keep sensitive layers float until the top-1 "
                          "drop on --eval-data is at most this many points")
    cal.add_argument("--max-float-layers", type=int,
                     help="accuracy-aware mode: most layers left float (default: a quarter)")
    add_threads_args(cal, f"ONNX Runtime threads of the statistics pass and scoring (default "
                          f"{_OPTS.threads}: the runtime decides)", _OPTS.threads)
    add_progress_args(cal)
    cal.set_defaults(func=_calibrate)

    chk = subparsers.add_parser("check-qdq", help="check a QDQ ONNX against TensorRT's rules")
    chk.add_argument("model", type=Path)
    chk.set_defaults(func=_check)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _options(args: argparse.Namespace) -> CalibrationOptions:
    from edge_resnet.calibration.options import (AccuracyOptions, CacheOptions, Fp16Options,
                                                 MethodOptions, ReaderOptions)

    accuracy = None
    if args.eval_data is not None:
        accuracy = AccuracyOptions(args.eval_data, max_drop=args.max_drop,
                                   max_float_layers=args.max_float_layers)
    elif args.max_drop is not None or args.max_float_layers is not None:
        raise InputError("--max-drop needs --eval-data: a labeled held-out folder (one subfolder "
                         "per class) to measure the drop on")
    return CalibrationOptions(
        methods=(args.method,),
        reader=ReaderOptions(args.num_images, args.seed, args.batch_size, args.frame_stride),
        ranges=MethodOptions(percentile=args.percentile),
        cache=CacheOptions(args.trt_version, args.cache_calibrator),
        fp16=Fp16Options(keep_io_types=not args.fp16_io) if args.fp16 else None,
        accuracy=accuracy, quantize_fc=args.quantize_fc, stats_path=args.stats,
        threads=args.threads, progress=args.progress)


def _calibrate(args: argparse.Namespace) -> int:
    from edge_resnet.calibration.api import calibrate

    result = calibrate(args.model, args.data, Path(args.out), _options(args))
    lines: List[str] = [f"statistics: {result.stats_path} ({result.images_used} images, "
                        f"{result.skipped} skipped{', reused' if result.stats_reused else ''})"]
    if result.method_scores:
        lines.append(f"range methods scored on {result.holdout_images} held-out calibration "
                     "images:\n| method | agreement with FP32 % | KL |\n|---|---|---|")
        for score in result.method_scores.values():
            mark = " (chosen)" if score.method == result.chosen_method else ""
            lines.append(f"| {score.method}{mark} | {score.agreement:.2f} | {score.kl:.5f} |")
    if result.fp32_top1 is not None:
        lines.append(f"| model | top-1 % | drop (points) |\n|---|---|---|\n"
                     f"| fp32 | {_fmt(result.fp32_top1)} | 0.00 |")
        if result.fp16_top1 is not None:
            lines.append(f"| fp16 | {_fmt(result.fp16_top1)} | "
                         f"{_fmt(result.fp32_top1 - result.fp16_top1)} |")
    for art in result.methods.values():
        if art.top1 is not None and result.fp32_top1 is not None:
            lines.append(f"| int8 {art.method} | {_fmt(art.top1)} | "
                         f"{_fmt(result.fp32_top1 - art.top1)} |")
    for art in result.methods.values():
        lines.append(f"{art.method}: {art.qdq_path}, {art.cache_path}, {art.ranges_path}"
                     f"{' (reused)' if art.reused else ''}")
    if result.fp16_path:
        lines.append(f"fp16: {result.fp16_path}")
    if result.mixed is not None:
        lines.append(f"mixed ({result.chosen_method or result.best_method}): {result.mixed_path}; float layers "
                     f"{result.mixed.float_nodes or 'none'}; top-1 drop "
                     f"{result.mixed.drop:.2f} points (plain INT8 {result.mixed.plain_drop:.2f})")
    print("\n".join(lines))
    return 0


def _check(args: argparse.Namespace) -> int:
    from edge_resnet.calibration.checker import check_qdq_file

    violations = check_qdq_file(args.model)
    for v in violations:
        print(f"{args.model}: {v}", file=sys.stderr)
    if violations:
        return 2
    print(f"{args.model}: OK (TensorRT explicit-quantization rules)")
    return 0
