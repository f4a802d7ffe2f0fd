"""The PyTorch backend on CUDA and ``run --backend pytorch --preprocess gpu`` end to end.

GPU tests use a seeded random-weight checkpoint (``random_checkpoint``): the question is whether
the GPU paths compute what the CPU paths compute, which any weights answer. The CPU tests here
check the ``--preprocess`` plumbing with the trained digits model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from skimage import data

from edge_resnet.core import InputError
from edge_resnet.preprocessing import preprocess_batch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))

from media import digit_frames, write_video  # noqa: E402

gpu = pytest.mark.gpu  # skips with the reason on machines without a CUDA device


def _photos(n: int) -> List[np.ndarray]:
    names = ["astronaut", "chelsea", "coffee", "rocket"]
    return [np.ascontiguousarray(getattr(data, names[i % 4])()[..., :3]) for i in range(n)]


def _close(a: np.ndarray, b: np.ndarray, rel: float) -> bool:
    return float(np.abs(a - b).max()) <= rel * float(np.abs(b).max()) + 1e-4


@gpu
@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
def test_cuda_fp32_matches_cpu(random_checkpoint: Path, graphs: bool) -> None:
    from edge_resnet.backends.pytorch import PyTorchBackend

    with PyTorchBackend(random_checkpoint, device="cpu") as cpu, \
            PyTorchBackend(random_checkpoint, device="cuda", cuda_graphs=graphs) as cuda:
        batch = preprocess_batch(_photos(4), cpu.spec)
        ref = cpu.infer(batch).logits
        for n in (1, 4, 1):  # two batch sizes, and replaying a captured one again
            out = cuda.infer(batch[:n]).logits
            assert _close(out, ref[:n], 1e-3)
        assert cuda.info.device.startswith("cuda:0")
        assert (len(cuda._graphs) == 2) == graphs


@gpu
def test_cuda_fp16_is_close_to_fp32(random_checkpoint: Path) -> None:
    from edge_resnet.backends.pytorch import PyTorchBackend

    with PyTorchBackend(random_checkpoint, device="cuda") as fp32, \
            PyTorchBackend(random_checkpoint, device="cuda", precision="fp16") as fp16:
        batch = preprocess_batch(_photos(4), fp32.spec)
        a, b = fp32.infer(batch).logits, fp16.infer(batch).logits
    assert fp16.info.precision == "fp16" and b.dtype == np.float32
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99


@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_infer_frames_matches_cpu_preprocessing(random_checkpoint: Path, precision: str) -> None:
    from edge_resnet.backends.pytorch import PyTorchBackend

    frames = [np.ascontiguousarray(p[..., ::-1]) for p in _photos(3)]  # BGR, as cameras give
    with PyTorchBackend(random_checkpoint, device="cuda", precision=precision) as backend:
        assert backend.gpu_frames
        ref = backend.infer(preprocess_batch(frames, backend.spec, color_order="BGR")).logits
        out = backend.infer_frames(frames, color_order="BGR").logits
        assert set(backend.last_timings) == {"preprocess", "infer"}
        assert all(v > 0 for v in backend.last_timings.values())
    # same network, same graph, inputs equal within one 8-bit level
    assert _close(out, ref, 2e-2)


@gpu
def test_two_batches_in_flight(random_checkpoint: Path) -> None:
    from edge_resnet.backends.pytorch import PyTorchBackend
    from edge_resnet.core import BackendError

    frames = [np.ascontiguousarray(p[..., ::-1]) for p in _photos(4)]
    with PyTorchBackend(random_checkpoint, device="cuda") as backend:
        expected = [backend.infer_frames([f]).logits for f in frames[:2]]
        first = backend.submit_frames([backend.stage_frame(frames[0])])
        second = backend.submit_frames([frames[1]])
        with pytest.raises(BackendError, match="in flight"):
            backend.submit_frames([frames[2]])
        # a synchronous infer meanwhile must not touch the in-flight graph inputs
        plain = backend.infer(preprocess_batch(frames[3:], backend.spec, color_order="BGR"))
        assert _close(backend.wait(first).logits, expected[0], 1e-4)
        assert _close(backend.wait(second).logits, expected[1], 1e-4)
        assert plain.logits.shape == expected[0].shape


def _video(tmp_path: Path, digits_dirs: Any, count: int = 24) -> Path:
    from fixtures import load_labeled_images

    frames, _ = digit_frames(load_labeled_images(digits_dirs.test_dir), count)
    return write_video(tmp_path / "digits.avi", frames)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_resnet.cli", "run", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def _labels(stdout: str) -> List[str]:
    """Top-1 labels of the result lines (other event lines, such as run start/end, skipped)."""
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [e["label"] for e in events if e.get("type", "result") == "result" and "label" in e]


@gpu
def test_run_cli_with_gpu_preprocessing(random_checkpoint: Path, digits_dirs: Any,
                                        tmp_path: Path) -> None:
    video = _video(tmp_path, digits_dirs)
    metrics = tmp_path / "metrics.json"
    common = [str(random_checkpoint), str(video), "--backend", "pytorch", "--device", "cuda",
              "--stats-interval", "0"]
    gpu_run = _run_cli(*common, "--metrics-json", str(metrics))
    cpu_run = _run_cli(*common, "--preprocess", "cpu")
    assert gpu_run.returncode == 0, gpu_run.stderr
    assert cpu_run.returncode == 0, cpu_run.stderr
    snapshot = json.loads(metrics.read_text())
    assert snapshot["counts"]["processed"] == 24
    assert {"preprocess", "gpu_infer", "infer"} <= set(snapshot["latency_ms"])  # GPU-timed
    gpu_labels, cpu_labels = _labels(gpu_run.stdout), _labels(cpu_run.stdout)
    assert len(gpu_labels) == len(cpu_labels) == 24
    assert sum(a == b for a, b in zip(gpu_labels, cpu_labels)) >= 22  # near-ties may flip


@gpu
def test_run_cli_trained_digits_on_cuda(digits_checkpoint: Path, digits_dirs: Any,
                                        tmp_path: Path) -> None:
    """The trained digits model, FP16 on CUDA with GPU preprocessing, classifies the video
    like the CPU backend with CPU preprocessing."""
    from fixtures import load_labeled_images

    frames, labels = digit_frames(load_labeled_images(digits_dirs.test_dir), 24)
    video = write_video(tmp_path / "d.avi", frames)
    gpu_run = _run_cli(str(digits_checkpoint), str(video), "--backend", "pytorch", "--device",
                       "cuda", "--precision", "fp16", "--preprocess", "gpu",
                       "--stats-interval", "0")
    cpu_run = _run_cli(str(digits_checkpoint), str(video), "--backend", "pytorch", "--device",
                       "cpu", "--stats-interval", "0")
    assert gpu_run.returncode == 0, gpu_run.stderr
    assert cpu_run.returncode == 0, cpu_run.stderr
    gpu_labels, cpu_labels = _labels(gpu_run.stdout), _labels(cpu_run.stdout)
    assert len(gpu_labels) == len(cpu_labels) == 24
    assert sum(a == b for a, b in zip(gpu_labels, cpu_labels)) >= 23  # fp16 may flip a near-tie
    assert sum(p == str(t) for p, t in zip(gpu_labels, labels)) >= \
        sum(p == str(t) for p, t in zip(cpu_labels, labels)) - 1


def test_preprocess_gpu_on_a_cpu_backend_is_refused(random_checkpoint: Path, digits_dirs: Any,
                                                   tmp_path: Path) -> None:
    video = _video(tmp_path, digits_dirs, count=4)
    result = _run_cli(str(random_checkpoint), str(video), "--backend", "pytorch", "--device",
                      "cpu", "--preprocess", "gpu")
    assert result.returncode == 2
    assert "--preprocess gpu needs a backend on a CUDA GPU" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_cli_pytorch_on_cpu(digits_checkpoint: Path, digits_dirs: Any, tmp_path: Path) -> None:
    from fixtures import load_labeled_images

    frames, labels = digit_frames(load_labeled_images(digits_dirs.test_dir), 12)
    video = write_video(tmp_path / "d.avi", frames)
    result = _run_cli(str(digits_checkpoint), str(video), "--backend", "pytorch", "--device",
                      "cpu", "--threads", "2", "--stats-interval", "0")
    assert result.returncode == 0, result.stderr
    predicted = _labels(result.stdout)
    assert len(predicted) == 12
    # MJPG-compressed frames of a model trained on clean digits: most are still right
    assert sum(p == str(t) for p, t in zip(predicted, labels)) >= 8


def test_config_refuses_unknown_preprocess_mode() -> None:
    from edge_resnet.runtime.pipeline import PipelineConfig

    with pytest.raises(InputError, match="auto, cpu or gpu"):
        PipelineConfig(preprocess="npu")
