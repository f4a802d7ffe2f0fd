"""``edge-resnet run``, ``edge-resnet gallery enroll`` and ``edge-resnet bench``.

Thin argument layers over :mod:`edge_resnet.runtime.service`, :mod:`.gallery` and :mod:`.bench`,
in the spirit of jetson-inference's ``imagenet.py input output``: positional URIs, few flags.
Imports nothing heavy at registration so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge_resnet.cli_args import (add_backend_args, add_backends_list_args, add_batch_args,
                                  add_images_args, add_playback_args, add_report_args,
                                  add_results_args, add_threads_args, backend_options,
                                  positive_int)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from edge_resnet.runtime.pipeline import PipelineConfig
    from edge_resnet.runtime.timing import BenchOptions

    _add_run(subparsers, PipelineConfig())
    _add_gallery(subparsers)
    _add_bench(subparsers, BenchOptions())


def _add_run(subparsers: Any, defaults: Any) -> None:
    run = subparsers.add_parser(
        "run", help="classify a camera, stream, video or image folder",
        description="Run MODEL on SOURCE and write results to OUTPUTs. SOURCE: csi://0, "
                    "v4l2:///dev/video0, /dev/video0, 0, rtsp://..., http://..., "
                    "file://clip.mp4 or clip.mp4, an image folder or glob, gst://<pipeline>. "
                    "OUTPUT: - (JSON Lines on stdout, default), out.jsonl, out.mp4/.avi "
                    "(annotated), display://0. With --bundle-root ROOT there is no MODEL: "
                    "the active release of the slot root runs, SIGHUP reloads it.",
        usage="%(prog)s [options] MODEL SOURCE [OUTPUT ...]\n"
              "       %(prog)s --bundle-root ROOT [options] SOURCE [OUTPUT ...]")
    run.add_argument("model", metavar="MODEL",
                     help="edge-resnet ONNX model (a .pt checkpoint with --backend pytorch); "
                          "left out with --bundle-root")
    run.add_argument("source", metavar="SOURCE", nargs="?", help="source URI")
    run.add_argument("outputs", metavar="OUTPUT", nargs="*", default=[],
                     help="output URIs (several allowed; default -)")
    run.add_argument("--bundle-root", metavar="ROOT",
                     help="run the active release of this slot root (`bundle install --root`) "
                          "instead of MODEL; SIGHUP reloads whatever release is active then")
    add_backend_args(run)
    run.add_argument("--width", type=positive_int, help="camera capture width")
    run.add_argument("--height", type=positive_int, help="camera capture height")
    add_playback_args(run)
    add_results_args(run, defaults)
    run.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                     help="longest wait for a batch to fill")
    run.add_argument("--smooth", type=positive_int, default=defaults.smoothing,
                     help="average probabilities over N frames")
    run.add_argument("--threshold", type=float, default=defaults.threshold,
                     help="below this top-1 probability the label is 'unknown'")
    run.add_argument("--gallery", help="identity gallery (.npz from `gallery enroll`)")
    run.add_argument("--gallery-cert",
                     help="fleet certificate: the gallery must carry a valid fleet signature")
    run.add_argument("--match-threshold", type=float,
                     help="cosine similarity to accept an identity (default: the gallery's "
                          "suggestion)")
    run.add_argument("--reconnect-attempts", type=positive_int,
                     help="give up after N reconnects of a lost live source (default: never)")
    run.add_argument("--metrics-json",
                     help="metrics summary file, rewritten atomically every --metrics-interval "
                          "s and at the end (also when the run fails)")
    run.add_argument("--metrics-interval", type=float, default=5.0,
                     help="seconds between --metrics-json rewrites (0: only at the end)")
    run.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics on this port (0: any free port)")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="address the metrics server binds (default 127.0.0.1: this host "
                          "only; 0.0.0.0 exposes it)")
    run.add_argument("--camera-id", help="camera name put into every event and the metrics")
    run.add_argument("--model-name", help="model name for events/metrics (default: file name)")
    run.add_argument("--model-version", help="model version for events/metrics")
    run.add_argument("--freeze-timeout", type=float, default=defaults.freeze_timeout_s,
                     help="live sources: seconds without a new (non-identical) frame before "
                          "the source counts as frozen and is reconnected (0: off)")
    run.add_argument("--device", default=None,
                     help="pytorch backend: auto (default), cpu, cuda or cuda:N")
    run.add_argument("--precision", default=None, choices=["fp32", "fp16"],
                     help="pytorch backend on CUDA: network precision (default fp32)")
    run.add_argument("--preprocess", default="auto", choices=["auto", "cpu", "gpu"],
                     help="resize/normalise on the GPU (backends on CUDA) or the CPU; auto: "
                          "the GPU whenever the backend runs there")
    run.set_defaults(func=_run)


def _add_gallery(subparsers: Any) -> None:
    gallery = subparsers.add_parser("gallery", help="identity galleries for embedding matching")
    gsub = gallery.add_subparsers(dest="gallery_command", metavar="ACTION")
    from edge_resnet.faceid.cli import add_gallery_commands

    add_gallery_commands(gsub)  # enroll, eval, glyphs
    gallery.set_defaults(func=lambda args: (gallery.print_help(), 2)[1])


def _add_bench(subparsers: Any, defaults: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark table across models x backends",
        description="File size, precision, accuracy (with --data), bs1 latency p50/p90/p99, "
                    "throughput at --batch-size and pipeline FPS (with --video).")
    bench.add_argument("models", nargs="+", help="models to compare")
    add_backends_list_args(bench, defaults.backends)
    add_threads_args(bench, "CPU inference threads (0: the backend's default)")
    bench.add_argument("--data", help="labeled image folder for accuracy")
    add_images_args(bench, defaults.max_images, "images of --data scored for accuracy")
    bench.add_argument("--video", help="video file for pipeline FPS")
    add_batch_args(bench, defaults.batch, "throughput batch size")
    bench.add_argument("--runs", type=positive_int, default=defaults.runs, help="timed bs1 runs")
    add_report_args(bench, "FILE.json", "write the table as JSON here", "--json")
    bench.set_defaults(func=_bench)


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.core import InputError
    from edge_resnet.runtime.capture import Backoff
    from edge_resnet.runtime.logs import configure_logging
    from edge_resnet.runtime.pipeline import PipelineConfig
    from edge_resnet.runtime.service import build_pipeline, run_until_signal
    from edge_resnet.runtime.sources import SourceOptions

    configure_logging(bool(getattr(args, "verbose", False)))
    positionals = [args.model] + ([args.source] if args.source is not None else []) \
        + list(args.outputs)
    if args.bundle_root is None and args.commit_after is not None:
        raise InputError("--commit-after confirms a release: it needs --bundle-root")
    model = None if args.bundle_root is not None else positionals.pop(0)
    if not positionals:
        raise InputError("give SOURCE (e.g. csi://0, clip.mp4, an image folder)"
                         + ("" if model is None else " after MODEL"))
    source, outputs = positionals[0], positionals[1:] or ["-"]
    options = SourceOptions(width=args.width, height=args.height, fps=args.fps, loop=args.loop,
                            realtime=args.realtime)
    config = PipelineConfig(max_batch=args.batch_size, max_wait_ms=args.max_wait_ms,
                            top_k=args.top_k, smoothing=args.smooth, threshold=args.threshold,
                            match_threshold=args.match_threshold,
                            stats_interval_s=args.stats_interval, max_frames=args.max_frames,
                            backoff=Backoff(attempts=args.reconnect_attempts),
                            preprocess=args.preprocess,
                            freeze_timeout_s=args.freeze_timeout)
    options_of_backend = backend_options(args)
    service = dict(metrics_json=args.metrics_json, metrics_port=args.metrics_port,
                   metrics_host=args.metrics_host, metrics_interval_s=args.metrics_interval)
    if model is None:  # the same code as `edge-resnet bundle run`
        from edge_resnet.bundle.runner import run_release

        run_release(args.bundle_root, source, outputs, backend=args.backend,
                    threads=args.threads, source_options=options, config=config,
                    commit_after=args.commit_after, service_options=service,
                    pipeline_options=dict(gallery=args.gallery, backend_options=options_of_backend,
                                          gallery_cert=args.gallery_cert,
                                          camera_id=args.camera_id, model_name=args.model_name,
                                          model_version=args.model_version))
        return 0
    pipeline = build_pipeline(model, source, outputs, backend=args.backend,
                              threads=args.threads, source_options=options, config=config,
                              gallery=args.gallery, backend_options=options_of_backend,
                              gallery_cert=args.gallery_cert, camera_id=args.camera_id,
                              model_name=args.model_name, model_version=args.model_version)
    run_until_signal(pipeline, **service)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edge_resnet.runtime.timing import BenchOptions, format_table, run_bench

    options = BenchOptions(backends=args.backends,
                           threads=args.threads, data=args.data, max_images=args.num_images,
                           video=args.video, batch=args.batch_size, runs=args.runs)
    rows = run_bench(args.models, options)
    print(format_table(rows), file=sys.stdout)
    if args.report:
        from edge_resnet.io_utils import atomic_write_json
        atomic_write_json(args.report, [r.to_dict() for r in rows])
    return 0
