"""Output URIs, the JSONL schema and the display refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.runtime.capture import Frame
from edge_resnet.runtime.events import SCHEMA_VERSION, EventLog, ModelInfo, redact
from edge_resnet.runtime.outputs import (DisplayOutput, JsonlOutput, VideoOutput, annotate,
                                         create_output, result_fields)
from edge_resnet.runtime.postprocess import Classification


def _result() -> Classification:
    return Classification(label="dog", prob=0.75, topk=[{"index": 1, "label": "dog", "prob": 0.75},
                                                          {"index": 0, "label": "cat", "prob": 0.2}])


def test_output_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(create_output("-", 25), JsonlOutput)
    assert isinstance(create_output(str(tmp_path / "a.jsonl"), 25), JsonlOutput)
    assert isinstance(create_output(f"file://{tmp_path / 'b.mp4'}", 25), VideoOutput)
    with pytest.raises(InputError, match="unknown output"):
        create_output(str(tmp_path / "x.txt"), 25)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="needs a display"):
        create_output("display://0", 25)
    monkeypatch.setenv("DISPLAY", ":0")
    assert isinstance(create_output("display://0", 25), DisplayOutput)


def test_jsonl_events_are_stamped_numbered_and_appended(tmp_path: Path) -> None:
    """Two runs append to one file; each begins with run_start, every event carries the
    envelope, seq counts up per run, and the result fields are exactly the schema."""
    path = tmp_path / "sub" / "e.jsonl"
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 7, 1700000000.5, 0.0, 123.25)
    model = ModelInfo("m.onnx", "1.2", "ab" * 32)
    run_ids = []
    for _ in range(2):
        out = JsonlOutput(str(path))
        log = EventLog("rtsp://admin:hunter2@10.0.0.7/cam", model, camera_id="gate-3")
        log.sinks = [out]
        log.run_start({"backend": "onnxruntime"})
        log.emit("result", result_fields(frame, _result(), 12.3456), wall=frame.timestamp,
                 monotonic=frame.monotonic)
        out.close()
        run_ids.append(log.run_id)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["type"], e["seq"], e["run_id"]) for e in lines] == [
        ("run_start", 1, run_ids[0]), ("result", 2, run_ids[0]),
        ("run_start", 1, run_ids[1]), ("result", 2, run_ids[1])]
    assert run_ids[0] != run_ids[1]
    assert "hunter2" not in path.read_text()
    assert lines[1] == {
        "schema": SCHEMA_VERSION, "type": "result", "run_id": run_ids[0], "seq": 2,
        "camera_id": "gate-3", "source": "rtsp://admin:***@10.0.0.7/cam",
        "model": {"name": "m.onnx", "version": "1.2", "sha256": "ab" * 32},
        "timestamp": 1700000000.5, "monotonic": 123.25, "frame": 7, "label": "dog",
        "prob": 0.75, "topk": [{"label": "dog", "index": 1, "prob": 0.75},
                               {"label": "cat", "index": 0, "prob": 0.2}],
        "latency_ms": 12.346}


@pytest.mark.parametrize("uri,safe", [
    ("rtsp://admin:hunter2@10.0.0.7:554/cam", "rtsp://admin:***@10.0.0.7:554/cam"),
    ("rtsp://tok3n@cam.local/live", "rtsp://***@cam.local/live"),
    ("http://u:p%40ss@h/x.mjpg", "http://u:***@h/x.mjpg"),
    ("rtsp://10.0.0.7/cam", "rtsp://10.0.0.7/cam"),
    ("cannot open rtsp://a:b@h/x and http://c:d@e/f", "cannot open rtsp://a:***@h/x and "
                                                      "http://c:***@e/f"),
])
def test_credentials_are_redacted(uri: str, safe: str) -> None:
    assert redact(uri) == safe


def test_output_whose_parent_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    for name in ("out.jsonl", "deeper/out.mp4"):
        with pytest.raises(InputError, match="a_file is a file, not a folder"):
            create_output(str(tmp_path / "a_file" / name))


def test_annotate_draws_without_touching_the_input() -> None:
    image = np.full((240, 320, 3), 90, np.uint8)
    drawn = annotate(image, _result(), 29.5)
    assert (image == 90).all()
    assert (drawn != 90).any(axis=2)[:60].sum() > 200
    assert (drawn[120:] == 90).all()
