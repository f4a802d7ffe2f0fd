"""``edge-resnet run``, ``edge-resnet gallery enroll`` and ``edge-resnet bench``.

Thin argument layers over :mod:`edge_resnet.runtime.service`, :mod:`.gallery` and :mod:`.bench`,
in the spirit of jetson-inference's ``imagenet.py input output``: positional URIs, few flags.
Imports nothing heavy at registration so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """--backend (registry names + auto) and --threads, one spelling for every runtime command."""
    from edge_resnet.backends.base import backend_names

    p.add_argument("--backend", default="auto", choices=["auto"] + backend_names(),
                   help="inference backend (default auto: TensorRT for engines, PyTorch for .pt, "
                        "OpenVINO for INT8 QDQ on a CPU with VNNI/AMX when installed, else ONNX "
                        "Runtime; the choice and the reason are logged)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU inference threads (0: the backend's default)")


def register(subparsers: Any) -> None:
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
    run.add_argument("--commit-after", type=_positive_int, metavar="N",
                     help="with --bundle-root: commit a pending release once N frames have "
                          "turned into results")
    add_backend_args(run)
    run.add_argument("--width", type=_positive_int, help="camera capture width")
    run.add_argument("--height", type=_positive_int, help="camera capture height")
    run.add_argument("--fps", type=float, help="camera capture rate (and video output rate)")
    run.add_argument("--loop", type=int, default=0,
                     help="files: play N extra times (-1: forever)")
    run.add_argument("--realtime", action="store_true",
                     help="files: play at the file's rate, dropping frames like a camera")
    run.add_argument("--batch", type=_positive_int, default=1, help="max batch size")
    run.add_argument("--max-wait-ms", type=float, default=5.0,
                     help="longest wait for a batch to fill")
    run.add_argument("--top-k", type=_positive_int, default=5)
    run.add_argument("--smooth", type=_positive_int, default=1,
                     help="average probabilities over N frames")
    run.add_argument("--threshold", type=float, default=0.0,
                     help="below this top-1 probability the label is 'unknown'")
    run.add_argument("--gallery", help="identity gallery (.npz from `gallery enroll`)")
    run.add_argument("--gallery-cert",
                     help="fleet certificate: the gallery must carry a valid fleet signature")
    run.add_argument("--match-threshold", type=float,
                     help="cosine similarity to accept an identity (default: the gallery's "
                          "suggestion)")
    run.add_argument("--stats-interval", type=float, default=10.0,
                     help="seconds between metrics lines on stderr (0: only the summary)")
    run.add_argument("--max-frames", type=_positive_int, help="stop after N frames")
    run.add_argument("--reconnect-attempts", type=_positive_int,
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
    run.add_argument("--freeze-timeout", type=float, default=5.0,
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

    gallery = subparsers.add_parser("gallery", help="identity galleries for embedding matching")
    gsub = gallery.add_subparsers(dest="gallery_command", metavar="ACTION")
    from edge_resnet.faceid.cli import add_gallery_commands

    add_gallery_commands(gsub)  # enroll, eval, glyphs
    gallery.set_defaults(func=lambda args: (gallery.print_help(), 2)[1])

    bench = subparsers.add_parser(
        "bench", help="benchmark table across models x backends",
        description="File size, precision, accuracy (with --data), bs1 latency p50/p90/p99, "
                    "throughput at --batch and pipeline FPS (with --video).")
    bench.add_argument("models", nargs="+", help="models to compare")
    bench.add_argument("--backends", default="auto",
                       help="comma-separated backends (e.g. onnxruntime,openvino; default auto: "
                            "chosen per model, the table says which and why)")
    bench.add_argument("--threads", type=int, default=0)
    bench.add_argument("--data", help="labeled image folder for accuracy")
    bench.add_argument("--max-images", type=_positive_int, help="cap on accuracy images")
    bench.add_argument("--video", help="video file for pipeline FPS")
    bench.add_argument("--batch", type=_positive_int, default=8, help="throughput batch size")
    bench.add_argument("--runs", type=_positive_int, default=50, help="timed bs1 runs")
    bench.add_argument("--json", dest="json_out", help="write the table as JSON here")
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
    config = PipelineConfig(max_batch=args.batch, max_wait_ms=args.max_wait_ms, top_k=args.top_k,
                            smoothing=args.smooth, threshold=args.threshold,
                            match_threshold=args.match_threshold,
                            stats_interval_s=args.stats_interval, max_frames=args.max_frames,
                            backoff=Backoff(attempts=args.reconnect_attempts),
                            preprocess=args.preprocess,
                            freeze_timeout_s=args.freeze_timeout)
    backend_options = {key: value for key, value in (("device", args.device),
                                                     ("precision", args.precision))
                       if value is not None}
    service = dict(metrics_json=args.metrics_json, metrics_port=args.metrics_port,
                   metrics_host=args.metrics_host, metrics_interval_s=args.metrics_interval)
    if model is None:  # the same code as `edge-resnet bundle run`
        from edge_resnet.bundle.runner import run_release

        run_release(args.bundle_root, source, outputs, backend=args.backend,
                    threads=args.threads, source_options=options, config=config,
                    commit_after=args.commit_after, service_options=service,
                    pipeline_options=dict(gallery=args.gallery, backend_options=backend_options,
                                          gallery_cert=args.gallery_cert,
                                          camera_id=args.camera_id, model_name=args.model_name,
                                          model_version=args.model_version))
        return 0
    pipeline = build_pipeline(model, source, outputs, backend=args.backend,
                              threads=args.threads, source_options=options, config=config,
                              gallery=args.gallery, backend_options=backend_options,
                              gallery_cert=args.gallery_cert, camera_id=args.camera_id,
                              model_name=args.model_name, model_version=args.model_version)
    run_until_signal(pipeline, **service)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edge_resnet.runtime.timing import BenchOptions, format_table, run_bench

    options = BenchOptions(backends=[b.strip() for b in args.backends.split(",") if b.strip()],
                           threads=args.threads, data=args.data, max_images=args.max_images,
                           video=args.video, batch=args.batch, runs=args.runs)
    rows = run_bench(args.models, options)
    print(format_table(rows), file=sys.stdout)
    if args.json_out:
        from edge_resnet.io_utils import atomic_write_json
        atomic_write_json(args.json_out, [r.to_dict() for r in rows])
    return 0
