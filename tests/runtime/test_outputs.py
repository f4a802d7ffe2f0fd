"""Output URIs, the JSONL schema and the display refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.runtime.capture import Frame
from edge_resnet.runtime.outputs import (DisplayOutput, JsonlOutput, VideoOutput, annotate,
                                         create_output)
from edge_resnet.runtime.postprocess import Classification


def _result() -> Classification:
    return Classification(label="dog", prob=0.75, topk=[{"index": 1, "label": "dog", "prob": 0.75},
                                                          {"index": 0, "label": "cat", "prob": 0.2}])


def test_output_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(create_output("-", "s", 25), JsonlOutput)
    assert isinstance(create_output(str(tmp_path / "a.jsonl"), "s", 25), JsonlOutput)
    assert isinstance(create_output(f"file://{tmp_path / 'b.mp4'}", "s", 25), VideoOutput)
    with pytest.raises(InputError, match="unknown output"):
        create_output(str(tmp_path / "x.txt"), "s", 25)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="needs a display"):
        create_output("display://0", "s", 25)
    monkeypatch.setenv("DISPLAY", ":0")
    assert isinstance(create_output("display://0", "s", 25), DisplayOutput)


def test_jsonl_lines_are_whole_and_appended(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "e.jsonl"
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 7, 1700000000.5, 0.0)
    for _ in range(2):
        out = JsonlOutput(str(path), "cam")
        out.write(frame, _result(), 12.3456, 30.0)
        out.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2                               # a restarted service appends
    event = json.loads(lines[0])
    assert event == {"timestamp": 1700000000.5, "frame": 7, "source": "cam", "label": "dog",
                     "prob": 0.75, "topk": [{"label": "dog", "index": 1, "prob": 0.75},
                                            {"label": "cat", "index": 0, "prob": 0.2}],
                     "latency_ms": 12.346}


def test_annotate_draws_without_touching_the_input() -> None:
    image = np.full((240, 320, 3), 90, np.uint8)
    drawn = annotate(image, _result(), 29.5)
    assert (image == 90).all()
    assert (drawn != 90).any(axis=2)[:60].sum() > 200
    assert (drawn[120:] == 90).all()
