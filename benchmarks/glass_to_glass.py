"""Glass-to-glass latency of the camera runtime: send time in the pixels → result.

The runtime's ``latency_ms`` starts when OpenCV hands over a frame, leaving out encoding, the
network, FFmpeg's jitter buffer and decoding. Here the test camera (``tests/runtime/
rtsp_server.py``: gst-rtsp-server, H.264 zero-latency, 127.0.0.1) draws its wall-clock send time
into every frame as a 40-bit strip; an output decodes it when the frame's result is written, so
``result time - send time`` is the whole camera-to-result path. Printed next to the runtime's
own stage percentiles (capture→result ``end_to_end`` and the stages inside it).

    python benchmarks/glass_to_glass.py MODEL.onnx [--seconds 20 --fps 25 --backend openvino]
    python benchmarks/glass_to_glass.py MODEL.onnx --url rtsp://host/cam   # a camera that
                                                                           # draws the strip
Needs /usr/bin/python3 with Debian's python3-gi + gir1.2-gst-rtsp-server-1.0 for the built-in
camera. Numbers depend on the machine's load; run it on an otherwise idle device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))

from edge_resnet.runtime.telemetry import percentiles  # noqa: E402
from edge_resnet.runtime.outputs import Output  # noqa: E402
from edge_resnet.backends import load_backend  # noqa: E402
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig  # noqa: E402
from edge_resnet.runtime.sources import create_source  # noqa: E402
from rtsp_helpers import RtspCamera, decode_send_time_ms  # noqa: E402


class GlassToGlass(Output):
    """Decodes each frame's send time when its result is written; keeps the latencies."""

    needs_frame = True

    def __init__(self) -> None:
        self.latencies_ms: List[float] = []
        self.capture_lag_ms: List[float] = []   # send → OpenCV handed the frame over

    def write(self, frame: Any, result: Any, latency_ms: float, fps: float) -> None:
        now_ms = time.time() * 1000.0
        sent = decode_send_time_ms(frame.image, int(now_ms))
        self.latencies_ms.append(now_ms - sent)
        self.capture_lag_ms.append(frame.timestamp * 1000.0 - sent)


def _row(name: str, p: Any) -> str:
    return f"  {name:<24}{p['p50']:9.1f}{p['p90']:9.1f}{p['p99']:9.1f}{p['max']:9.1f}{p['count']:8d}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--url", help="an RTSP camera that draws the time strip (default: "
                                      "start the test camera on 127.0.0.1)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out first")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    camera = None if args.url else RtspCamera(fps=args.fps).start()
    url = args.url or camera.url  # type: ignore[union-attr]
    probe = GlassToGlass()
    backend = load_backend(args.backend, args.model, threads=args.threads)
    pipeline = Pipeline(backend, create_source(url), [probe], PipelineConfig())
    try:
        pipeline.start()
        time.sleep(args.warmup)
        skip = len(probe.latencies_ms)
        time.sleep(args.seconds)
    finally:
        pipeline.stop()
        snap = pipeline.close()
        backend.close()
        if camera is not None:
            camera.stop()
    g2g = np.asarray(probe.latencies_ms[skip:])
    lag = np.asarray(probe.capture_lag_ms[skip:])
    if g2g.size == 0:
        print("no results in the measuring window", file=sys.stderr)
        return 1
    print(f"glass-to-glass on {url} ({args.backend}, {snap['recent_fps']:.1f} FPS, "
          f"{g2g.size} frames after {args.warmup:.0f} s warm-up; dropped "
          f"{snap['counts']['dropped']} of {snap['counts']['captured']})")
    print(f"  {'ms':<24}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>8}")
    print(_row("glass_to_glass", percentiles(list(g2g))))
    print(_row("send_to_capture", percentiles(list(lag))))
    for stage in ("end_to_end", "capture", "queue", "preprocess", "infer", "postprocess",
                  "output"):
        if stage in snap["latency_ms"]:
            print(_row(f"runtime {stage}", snap["latency_ms"][stage]))
    print("send_to_capture = encode + RTP + jitter buffer + decode (what latency_ms leaves out);"
          " runtime stages are windowed over the whole run, warm-up included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
