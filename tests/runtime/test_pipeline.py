"""The pipeline end to end on OpenCV-written videos with the trained digits ResNet50."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.core import ModelError
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.gallery import Gallery
from edge_resnet.runtime.capture import Frame
from edge_resnet.runtime.outputs import Output, create_output
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
from edge_resnet.runtime.service import build_pipeline
from edge_resnet.runtime.sources import SourceOptions, create_source
from media import digit_frames, read_video, write_video


def _events(path: Path) -> List[dict]:
    """The result events of a JSONL file (run_start/run_end and source status left out)."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e["type"] == "result"]


def test_video_results_equal_direct_inference(digits_onnx: Path, digits_video: Tuple[Path, list],
                                              tmp_path: Path) -> None:
    video, _ = digits_video
    out = tmp_path / "events.jsonl"
    pipeline = build_pipeline(digits_onnx, str(video), [str(out)], threads=2,
                              config=PipelineConfig(top_k=3))
    snap = pipeline.run()
    events = _events(out)
    assert [e["frame"] for e in events] == list(range(40))
    c = snap["counts"]
    assert (c["captured"], c["processed"], c["dropped"]) == (40, 40, 0)
    # same frames decoded independently, preprocessed as BGR, inferred directly
    with load_backend("onnxruntime", digits_onnx) as backend:
        frames = read_video(video)
        logits = backend.infer(preprocess_batch(frames, backend.spec, color_order="BGR")).logits
    direct = [backend.spec.labels[i] for i in logits.argmax(1)]
    assert [e["label"] for e in events] == direct
    first = events[0]
    assert set(first) >= {"timestamp", "frame", "topk", "latency_ms", "label", "prob"}
    assert len(first["topk"]) == 3 and first["latency_ms"] > 0
    assert snap["latency_ms"]["end_to_end"]["p99"] >= snap["latency_ms"]["infer"]["p50"]


def test_batching_gives_the_same_results(digits_onnx: Path, digits_video: Tuple[Path, list],
                                         tmp_path: Path) -> None:
    video, _ = digits_video
    outs = []
    for batch in (1, 8):
        out = tmp_path / f"b{batch}.jsonl"
        snap = build_pipeline(digits_onnx, str(video), [str(out)], threads=2,
                              config=PipelineConfig(max_batch=batch, max_wait_ms=50)).run()
        outs.append((_events(out), snap))
    (one, snap1), (eight, snap8) = outs
    assert [e["label"] for e in one] == [e["label"] for e in eight]
    np.testing.assert_allclose([e["prob"] for e in one], [e["prob"] for e in eight], atol=1e-4)
    assert snap1["counts"]["batches"] == 40
    assert snap8["counts"]["batches"] < 40


def test_fused_preprocessing_model_gets_uint8_frames(digits_fused_onnx: Path,
                                                     digits_video: Tuple[Path, list],
                                                     tmp_path: Path) -> None:
    """The pipeline feeds a fused graph raw uint8 frames in the graph's colour order: its results
    equal direct inference on the same decoded frames (fused vs unfused numerics are export's
    test: tests/export/test_onnx_export.py)."""
    video, _ = digits_video
    out = tmp_path / "fused.jsonl"
    build_pipeline(digits_fused_onnx, str(video), [str(out)], threads=2).run()
    with load_backend("onnxruntime", digits_fused_onnx) as backend:
        assert backend.input_dtype == np.uint8
        batch = preprocess_batch(read_video(video), backend.spec, color_order="BGR")
        logits = backend.infer(batch).logits
    assert [e["label"] for e in _events(out)] == [backend.spec.labels[i] for i in logits.argmax(1)]


def test_annotated_video_and_several_outputs(digits_onnx: Path, digits_video: Tuple[Path, list],
                                             tmp_path: Path) -> None:
    video, _ = digits_video
    out_video, out_jsonl = tmp_path / "annotated.avi", tmp_path / "e.jsonl"
    snap = build_pipeline(digits_onnx, str(video), [str(out_video), str(out_jsonl)],
                          threads=2).run()
    import cv2
    written = read_video(out_video)
    source = read_video(video)
    cap = cv2.VideoCapture(str(out_video))
    assert cap.get(cv2.CAP_PROP_FPS) == 25.0          # the source's rate, not a default
    cap.release()
    assert len(written) == snap["counts"]["processed"] == len(_events(out_jsonl)) == 40
    assert written[0].shape == (480, 640, 3)
    # the top-left text band changed (label + FPS drawn), the bottom-right corner did not
    top = np.abs(written[5][:70, :300].astype(int) - source[5][:70, :300].astype(int)).mean()
    corner = np.abs(written[5][-60:, -60:].astype(int) - source[5][-60:, -60:].astype(int)).mean()
    assert top > 5 * max(corner, 0.5), (top, corner)


class SlowSink(Output):
    """An output that takes 20 ms per frame (like a slow uploader): the pipeline's bottleneck."""

    def __init__(self) -> None:
        self.frames: List[int] = []

    def write(self, frame: Frame, result: Any, latency_ms: float, fps: float) -> None:
        time.sleep(0.02)
        self.frames.append(frame.index)


def test_realtime_file_drops_and_counts_add_up(digits_onnx: Path, digits_test_images: Any,
                                               tmp_path: Path) -> None:
    """Paced at 100 FPS into a 50 FPS sink, frames drop; processed + dropped = captured and
    the newest frame always gets through."""
    frames, _ = digit_frames(digits_test_images, 40)
    video = write_video(tmp_path / "paced.avi", frames, fps=100)
    out = tmp_path / "e.jsonl"
    sink = SlowSink()
    backend = load_backend("onnxruntime", digits_onnx, threads=2)
    source = create_source(str(video), SourceOptions(realtime=True, loop=2))
    snap = Pipeline(backend, source, [create_output(str(out), None), sink]).run()
    c = snap["counts"]
    assert c["captured"] == 120
    assert c["dropped"] >= 20
    assert c["processed"] + c["dropped"] == c["captured"]
    assert len(_events(out)) == len(sink.frames) == c["processed"]
    assert sink.frames == sorted(sink.frames) and sink.frames[-1] == 119


def test_stop_drains_and_counts_add_up(digits_onnx: Path, digits_video: Tuple[Path, list],
                                       tmp_path: Path) -> None:
    video, _ = digits_video
    out = tmp_path / "e.jsonl"
    pipeline = build_pipeline(digits_onnx, str(video), [str(out)], threads=2,
                              source_options=SourceOptions(loop=-1))
    pipeline.start()
    while pipeline.metrics.counts()["processed"] < 30:
        assert not pipeline.wait(0.05)
    pipeline.stop()
    snap = pipeline.close()
    c = snap["counts"]
    assert c["processed"] >= 30 and c["dropped"] == 0
    assert c["processed"] == c["captured"] == len(_events(out))


def test_backend_failure_surfaces(digits_fused_onnx: Path, digits_video: Tuple[Path, list]
                                  ) -> None:
    """A stage error stops the pipeline and is raised to the caller, not swallowed."""
    from edge_resnet.core import InputError

    video, _ = digits_video
    backend = load_backend("onnxruntime", digits_fused_onnx)
    wrong_spec = backend.spec.with_changes(fused_preprocessing=False)   # float into a uint8 graph
    backend.spec = wrong_spec
    pipeline = Pipeline(backend, create_source(str(video)), [], PipelineConfig())
    with pytest.raises(InputError, match="fused in-graph"):
        pipeline.run()


def test_gallery_from_another_model_is_refused(digits_onnx: Path, digits_video: Tuple[Path, list]
                                               ) -> None:
    video, _ = digits_video
    backend = load_backend("onnxruntime", digits_onnx)
    other = Gallery(names=["a"], embeddings=np.full((1, 2048), 2048 ** -0.5, np.float32),
                    fingerprint="0" * 16, counts=[1])
    with pytest.raises(ModelError, match="enrolled with another model"):
        Pipeline(backend, create_source(str(video)), [create_output("-", 25)],
                 gallery=other)


def _rss_mb() -> float:
    """Resident set size of this process (Linux /proc), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_stays_flat_over_a_long_run(digits_onnx: Path, digits_video: Tuple[Path, list],
                                           tmp_path: Path) -> None:
    """600 frames of 640x480 (0.9 MB each): a pipeline that kept frames, tensors or events
    would grow by hundreds of MB; bounded queues and windowed metrics keep it flat."""
    video, _ = digits_video
    pipeline = build_pipeline(digits_onnx, str(video), [str(tmp_path / "e.jsonl")], threads=2,
                              source_options=SourceOptions(loop=14))
    samples: List[Tuple[int, float]] = []
    pipeline.start()
    while not pipeline.wait(0.05):
        samples.append((pipeline.metrics.snapshot()["counts"]["processed"], _rss_mb()))
    snap = pipeline.close()
    assert snap["counts"]["processed"] == 600
    warm = [rss for n, rss in samples if 100 <= n < 150]
    late = [rss for n, rss in samples if n >= 450]
    assert warm and late, samples[:3]
    growth = max(late) - min(warm)
    assert growth < 40.0, f"RSS grew {growth:.1f} MB between frame ~100 and the end"
