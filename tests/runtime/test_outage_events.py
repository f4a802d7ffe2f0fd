"""Outages an operator can trust, on a real MJPEG-over-HTTP server on 127.0.0.1: source_down /
source_up events with the real outage length, the first result soon after the source is back
(probing while backing off), frozen streams treated as outages, live vs overall FPS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List

from edge_resnet.runtime.capture import Backoff
from edge_resnet.runtime.pipeline import PipelineConfig
from edge_resnet.runtime.service import build_pipeline
from media import digit_frames, wait_until
from mjpeg_server import MjpegServer


def _lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_outage_events_measure_the_real_outage(digits_onnx: Path, digits_test_images: Any,
                                               tmp_path: Path) -> None:
    """Server down for ~1.5 s with a 5 s first backoff: the cheap TCP probe reopens the
    stream as soon as it is back, so the first new result comes well before the backoff
    would have allowed, and source_up reports last frame -> first new frame, not backoff."""
    frames, _ = digit_frames(digits_test_images, 10)
    server = MjpegServer(frames, fps=20).start()
    out = tmp_path / "events.jsonl"
    config = PipelineConfig(backoff=Backoff(initial=5.0, maximum=10.0))
    pipeline = build_pipeline(digits_onnx, server.url.replace("http://", "http://user:s3cret@"),
                              [str(out)], threads=2, config=config, camera_id="dock-1")
    processed = lambda: pipeline.metrics.counts()["processed"]  # noqa: E731
    pipeline.start()
    try:
        wait_until(lambda: processed() >= 10, 30, "the first results")
        server.stop()
        stopped = time.monotonic()
        wait_until(lambda: not pipeline.metrics.source_up, 10, "the outage to be noticed")
        time.sleep(1.5 - (time.monotonic() - stopped))
        before = processed()                    # frames in flight have drained by now
        server = MjpegServer(frames, port=server.port, fps=20).start()
        restarted = time.monotonic()
        wait_until(lambda: processed() > before, 10, "a result after the restart")
        first_result_after = time.monotonic() - restarted
        print(f"MJPEG: first result {first_result_after:.2f}s after the server came back")
        wait_until(lambda: processed() >= before + 10, 30, "results after the restart")
    finally:
        pipeline.stop()
        snap = pipeline.close()
        server.stop()
    down_for = restarted - stopped
    assert first_result_after < 2.0, f"first result {first_result_after:.2f}s after restart"
    lines = _lines(out)
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert {e["run_id"] for e in lines} == {pipeline.events.run_id}
    assert all(e["camera_id"] == "dock-1" for e in lines)
    assert "s3cret" not in out.read_text() and lines[0]["source"].startswith("http://user:***@")
    status = [e for e in lines if e["type"] in ("source_down", "source_up")]
    assert [e["type"] for e in status] == ["source_down", "source_up"]
    down, up = status
    assert down["last_frame_timestamp"] <= down["timestamp"]
    assert down["reason"] == "no frame"
    # outage = last frame before the stop -> first frame after the restart
    assert down_for - 0.1 <= up["outage_s"] <= down_for + 2.0, (up["outage_s"], down_for)
    assert up["monotonic"] - down["monotonic"] < up["outage_s"] + 0.1
    c = snap["counts"]
    assert (c["outages"], c["reconnects"]) == (1, 1)
    assert abs(snap["outage_s"] - up["outage_s"]) <= 0.0006      # the event rounds to ms
    assert snap["fps_live"] > snap["fps"]       # the outage counts only in the overall FPS


def test_frozen_stream_is_an_outage_not_new_results(digits_onnx: Path, digits_test_images: Any,
                                                    tmp_path: Path) -> None:
    """The server keeps sending the same JPEG (as a stalled CSI/RTSP stack keeps returning
    its last frame): no results while frozen, source_down(frozen), reconnect, and source_up
    once frames change again."""
    frames, _ = digit_frames(digits_test_images, 10)
    server = MjpegServer(frames, fps=20).start()
    out = tmp_path / "events.jsonl"
    config = PipelineConfig(backoff=Backoff(initial=0.2, maximum=0.5), freeze_timeout_s=1.0)
    pipeline = build_pipeline(digits_onnx, server.url, [str(out)], threads=2, config=config)
    counts = pipeline.metrics.counts
    pipeline.start()
    try:
        wait_until(lambda: counts()["processed"] >= 10, 30, "the first results")
        server.frozen = True
        wait_until(lambda: counts()["outages"] >= 1, 10, "the freeze to be detected")
        frozen_processed = counts()["captured"]
        time.sleep(1.0)
        assert counts()["captured"] == frozen_processed   # nothing new while frozen
        assert counts()["repeated"] >= 10
        server.frozen = False
        wait_until(lambda: counts()["processed"] >= frozen_processed + 10, 30, "results after thaw")
    finally:
        pipeline.stop()
        snap = pipeline.close()
        server.stop()
    lines = _lines(out)
    status = [e for e in lines if e["type"] in ("source_down", "source_up")]
    assert status[0]["type"] == "source_down" and status[0]["reason"] == "frozen"
    assert status[-1]["type"] == "source_up" and status[-1]["outage_s"] >= 1.0
    labels = [e["frame"] for e in lines if e["type"] == "result"]
    assert labels == sorted(labels) and len(labels) == snap["counts"]["processed"]
