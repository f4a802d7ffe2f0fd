"""A real RTSP camera (gst-rtsp-server, H.264, 127.0.0.1) with an outage mid-run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from edge_resnet.runtime.capture import Backoff
from edge_resnet.runtime.pipeline import PipelineConfig
from edge_resnet.runtime.service import build_pipeline
from media import wait_until
from rtsp_helpers import RtspCamera


@pytest.fixture()
def camera() -> Iterator[RtspCamera]:
    cam = RtspCamera()
    try:
        cam.start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield cam
    cam.stop()


def test_rtsp_stream_survives_an_outage(camera: RtspCamera, digits_onnx: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    # a 20 s first backoff: a reopen within 10 s of the restart can only be the probe's
    # (a margin that holds on a loaded 2-core machine, where decoding the first frames is slow)
    config = PipelineConfig(backoff=Backoff(initial=20.0, maximum=30.0))
    pipeline = build_pipeline(digits_onnx, camera.url, [str(out)], threads=2, config=config)
    counts = pipeline.metrics.counts
    pipeline.start()
    try:
        wait_until(lambda: counts()["processed"] >= 25, 60, "results from the RTSP camera")
        camera.stop()
        stopped = time.monotonic()
        wait_until(lambda: not pipeline.metrics.source_up, 15, "the outage to be noticed")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - stopped)))
        before = counts()["processed"]          # frames in flight have drained by now
        camera.start()
        restarted = time.monotonic()
        wait_until(lambda: counts()["processed"] > before, 30, "results after the restart")
        first_after = time.monotonic() - restarted
        print(f"RTSP: first result {first_after:.2f}s after the camera came back")
        wait_until(lambda: counts()["processed"] >= before + 25, 60, "more results")
    finally:
        pipeline.stop()
        snap = pipeline.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [e["type"] for e in lines if e["type"] != "result"]
    status = [{k: e[k] for k in ("type", "reason", "last_frame_age_s", "outage_s") if k in e}
              for e in lines if e["type"] in ("source_down", "source_up")]
    assert kinds == ["run_start", "source_down", "source_up", "run_end"], status
    up = next(e for e in lines if e["type"] == "source_up")
    down_for = restarted - stopped
    assert down_for - 0.5 <= up["outage_s"] <= down_for + 4.0, (up["outage_s"], down_for)
    # with a 20 s first backoff, only the probe can reopen this early
    assert first_after < 10.0, f"first result {first_after:.2f}s after the camera came back"
    c = snap["counts"]
    assert c["processed"] + c["dropped"] == c["captured"] and c["reconnects"] == 1
    assert [e["frame"] for e in lines if e["type"] == "result"] == \
        sorted(e["frame"] for e in lines if e["type"] == "result")


def test_send_time_strip_round_trips() -> None:
    """The glass-to-glass strip the test camera draws decodes back to the send time, also
    across the 40-bit wrap (pure Python drawing: no GStreamer needed)."""
    import numpy as np

    from rtsp_helpers import decode_send_time_ms
    from rtsp_server import draw

    for sent in (1_795_408_076_728, (1 << 40) * 2 - 3):
        grey = np.frombuffer(draw(320, 240, 7, sent), np.uint8).reshape(240, 320)
        bgr = np.repeat(grey[:, :, None], 3, axis=2)
        assert decode_send_time_ms(bgr, sent + 95) == sent
        assert decode_send_time_ms(grey, sent + 5) == sent
