"""Post-processing and metrics maths against direct numpy computations."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.runtime.telemetry import PipelineMetrics, format_summary, percentiles
from edge_resnet.runtime.postprocess import UNKNOWN, Postprocessor, softmax, top_k

LABELS = ("cat", "dog", "bird", "fish")


def test_softmax_matches_definition_and_is_stable() -> None:
    logits = np.array([[1.0, 2.0, 3.0, 0.5], [1000.0, 999.0, -5.0, 0.0]])
    probs = softmax(logits)
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(probs[0], expected, rtol=1e-6)
    assert np.isfinite(probs).all() and abs(float(probs[1].sum()) - 1.0) < 1e-6
    assert probs[1, 0] / probs[1, 1] == pytest.approx(np.e, rel=1e-4)


def test_top_k_order_and_labels() -> None:
    best = top_k(np.array([0.1, 0.5, 0.15, 0.25]), 3, LABELS)
    assert [b["label"] for b in best] == ["dog", "fish", "bird"]
    assert [b["index"] for b in best] == [1, 3, 2]
    assert len(top_k(np.array([0.1, 0.5, 0.15, 0.25]), 10, LABELS)) == 4


def test_threshold_reports_unknown() -> None:
    post = Postprocessor(LABELS, k=2, threshold=0.6)
    sure, unsure = post(np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]])))
    assert (sure.label, round(sure.prob, 4)) == ("cat", 0.7)
    assert unsure.label == UNKNOWN and unsure.topk[0]["label"] == "cat"


def test_temporal_smoothing_averages_the_last_frames() -> None:
    post = Postprocessor(LABELS, k=1, smoothing=3)
    frames = [[0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0], [0.3, 0.7, 0, 0], [0.1, 0.9, 0, 0]]
    logits = np.log(np.array(frames) + 1e-12)
    results = post(logits)
    # frame 1 alone says dog 0.8, but averaged with frame 0 the cat wins 0.55
    assert [r.label for r in results] == ["cat", "cat", "dog", "dog"]
    assert results[1].prob == pytest.approx(0.55, abs=1e-4)
    assert results[3].prob == pytest.approx((0.8 + 0.7 + 0.9) / 3, abs=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 0}, r"^top_k=0: must be >= 1"), ({"smoothing": 0}, r"^smoothing=0: must be >= 1 frame"),
    ({"threshold": 1.5}, r"^threshold=1.5: must be a probability in \[0, 1\]$")])
def test_postprocessor_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Postprocessor(LABELS, **kwargs)


def test_wrong_logit_width() -> None:
    with pytest.raises(InputError, match="do not match 4 labels"):
        Postprocessor(LABELS)(np.zeros((1, 3)))


def test_percentiles_match_numpy() -> None:
    values = np.random.RandomState(0).exponential(5.0, 1000)
    p = percentiles(values)
    np.testing.assert_allclose([p["p50"], p["p90"], p["p99"]],
                               np.percentile(values, [50, 90, 99]))
    assert percentiles([])["p99"] == 0.0


def test_metrics_counts_are_exact_across_threads() -> None:
    metrics = PipelineMetrics(window=100)

    def work() -> None:
        for _ in range(1000):
            metrics.count("captured")
            metrics.observe("infer", 2.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = metrics.snapshot()
    assert snap["counts"]["captured"] == 4000
    assert snap["latency_ms"]["infer"]["count"] == 100          # bounded window
    assert "captured 4000" in format_summary(snap)
