"""A real MJPEG-over-HTTP stream on 127.0.0.1 that stops and restarts mid-run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_resnet.runtime.capture import Backoff
from edge_resnet.runtime.pipeline import PipelineConfig
from edge_resnet.runtime.service import build_pipeline
from media import digit_frames, wait_until
from mjpeg_server import MjpegServer


def test_pipeline_reconnects_after_server_restart(digits_onnx: Path, digits_test_images: Any,
                                                  tmp_path: Path) -> None:
    frames, _ = digit_frames(digits_test_images, 10)
    server = MjpegServer(frames, fps=20).start()
    out = tmp_path / "events.jsonl"
    config = PipelineConfig(backoff=Backoff(initial=0.2, maximum=1.0))
    pipeline = build_pipeline(digits_onnx, server.url, [str(out)], threads=2, config=config)
    pipeline.start()
    try:
        processed = lambda: pipeline.metrics.counts()["processed"]  # noqa: E731
        wait_until(lambda: processed() >= 10, 30, "the first frames")
        server.stop()
        time.sleep(0.5)                      # frames already in flight finish
        during_outage = processed()
        time.sleep(1.0)                      # outage: reconnect attempts fail meanwhile
        assert not pipeline.wait(0)          # the pipeline keeps running through the outage
        before_restart = processed()
        assert before_restart == during_outage     # nothing arrives while the server is down
        server = MjpegServer(frames, port=server.port, fps=20).start()
        wait_until(lambda: processed() >= before_restart + 10, 30, "frames after the restart")
        wait_until(lambda: pipeline.metrics.counts()["reconnects"] >= 1, 10, "the reconnect count")
    finally:
        pipeline.stop()
        snap = pipeline.close()
        server.stop()
    c = snap["counts"]
    assert c["reconnects"] >= 1 and snap["outage_s"] >= 1.0
    assert c["processed"] + c["dropped"] == c["captured"]
    events = [e for e in map(json.loads, out.read_text().splitlines()) if e["type"] == "result"]
    assert len(events) == c["processed"]
    assert [e["frame"] for e in events] == sorted(e["frame"] for e in events)
