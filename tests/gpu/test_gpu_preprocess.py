"""GPU preprocessing against the CPU reference (``preprocess_batch``), on a real GPU."""

from __future__ import annotations

from typing import Any, List

import numpy as np
import pytest
from skimage import data

from edge_resnet.core import InputError, ModelSpec
from edge_resnet.preprocessing import preprocess_batch

pytestmark = pytest.mark.gpu

LABELS = ("a", "b")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def _photos() -> List[np.ndarray]:
    return [getattr(data, name)()[..., :3] for name in PHOTOS]


def _levels(gpu: np.ndarray, cpu: np.ndarray, spec: ModelSpec) -> float:
    """Largest difference in 8-bit levels (normalised values are scaled back by std*255)."""
    if gpu.dtype == np.uint8:
        return float(np.abs(gpu.astype(np.int16) - cpu.astype(np.int16)).max())
    std = np.asarray(spec.std, np.float32) * 255.0
    if spec.color_order == "BGR":
        std = std[::-1]
    shape = (1, 3, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, 3)
    diff = np.abs(gpu.astype(np.float32) - cpu.astype(np.float32)) * std.reshape(shape)
    return float(diff.max())


@pytest.mark.parametrize("spec", [
    ModelSpec(labels=LABELS), ModelSpec(labels=LABELS, resize=232),
    ModelSpec(labels=LABELS, resolution=32, resize=None),
    ModelSpec(labels=LABELS, color_order="BGR", layout="NHWC"),
], ids=["224-256", "224-232", "plain-32", "bgr-nhwc"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_photos_match_the_cpu_reference(spec: ModelSpec, order: str) -> None:
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    images = [img if order == "RGB" else np.ascontiguousarray(img[..., ::-1]) for img in _photos()]
    with GpuPreprocessor(spec) as pre:
        gpu = pre.to_host(images, color_order=order)
    cpu = preprocess_batch(images, spec, color_order=order)
    assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    assert _levels(gpu, cpu, spec) <= 1.0
    assert np.mean(gpu == cpu) > 0.95  # same taps and rounding as Pillow: nearly all identical


def test_float16_output_rounds_like_numpy() -> None:
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    with GpuPreprocessor(spec, out_dtype="float16") as pre:
        gpu = pre.to_host(_photos())
    cpu = preprocess_batch(_photos(), spec).astype(np.float16)
    assert gpu.dtype == np.float16
    assert _levels(gpu, cpu, spec) <= 1.0


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_fused_uint8_output_matches(order: str) -> None:
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS, fused_preprocessing=True, color_order=order, layout="NHWC")
    with GpuPreprocessor(spec) as pre:
        gpu = pre.to_host(_photos(), color_order="BGR")
    cpu = preprocess_batch(_photos(), spec, color_order="BGR")
    assert gpu.dtype == np.uint8 and _levels(gpu, cpu, spec) <= 1.0


def test_digits_match_the_cpu_reference(digits_dirs: Any) -> None:
    from edge_resnet.cuda.preprocess import GpuPreprocessor
    from fixtures import load_labeled_images

    images = [img for img, _ in load_labeled_images(digits_dirs.test_dir)[:64]]
    spec = ModelSpec(labels=tuple(str(i) for i in range(10)), resolution=32, resize=None)
    with GpuPreprocessor(spec) as pre:
        gpu = pre.to_host(images)
    cpu = preprocess_batch(images, spec)
    assert np.array_equal(gpu, cpu)  # 32x32 in, 32x32 out: an identity plan, exact


@pytest.mark.parametrize("source", ["pinned", "mapped"])
def test_pinned_and_mapped_sources_give_the_same_result(source: str) -> None:
    from edge_resnet.cuda import PinnedBuffer
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    with GpuPreprocessor(spec) as pre:
        expected = pre.to_host([frame], "BGR")
    with GpuPreprocessor(spec, mapped=source == "mapped") as pre, \
            PinnedBuffer(frame.shape, np.uint8) as pinned:
        pinned.array[...] = frame
        assert np.array_equal(pre.to_host([pinned.array], "BGR"), expected)


def test_steady_state_allocates_nothing() -> None:
    from edge_resnet.cuda import allocation_stats
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8)
              for i in range(4)]
    with GpuPreprocessor(spec) as pre:
        out = pre.output_buffer(1)
        pre.run(frames[:1], out.ptr, "BGR")  # first frame of a size: plan + buffers
        pre.stream.synchronize()
        before = allocation_stats()
        for i in range(300):
            pre.run([frames[i % 4]], out.ptr, "BGR")
        pre.stream.synchronize()
        assert allocation_stats() == before


def test_no_device_memory_leak_over_10000_frames() -> None:
    from edge_resnet.cuda import allocation_stats, mem_info
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with GpuPreprocessor(spec) as pre:
        out = pre.output_buffer(1)
        pre.run([frame], out.ptr)
        pre.stream.synchronize()
        free_before, live_before = mem_info()[0], allocation_stats()["device_bytes"]
        for _ in range(10_000):
            pre.run([frame], out.ptr)
        pre.stream.synchronize()
        free_after, live_after = mem_info()[0], allocation_stats()["device_bytes"]
    assert live_after == live_before
    assert abs(free_before - free_after) < (2 << 20)  # driver bookkeeping noise only


def test_bad_inputs_are_refused() -> None:
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    with GpuPreprocessor(spec) as pre:
        out = pre.output_buffer(1)
        with pytest.raises(InputError, match="uint8"):
            pre.run([np.zeros((64, 64, 3), np.float32)], out.ptr)
        with pytest.raises(InputError, match="HxWx3"):
            pre.run([np.zeros((64, 64), np.uint8)], out.ptr)
        with pytest.raises(InputError, match="empty batch"):
            pre.run([], out.ptr)
        with pytest.raises(InputError, match="RGB or BGR"):
            pre.run([np.zeros((64, 64, 3), np.uint8)], out.ptr, color_order="YUV")
    with pytest.raises(InputError, match="raw uint8"):
        GpuPreprocessor(spec, out_dtype="uint8")
    with pytest.raises(InputError, match="float32, float16 or uint8"):
        GpuPreprocessor(spec, out_dtype="int8")


def test_frames_already_on_the_device() -> None:
    from edge_resnet.cuda import DeviceBuffer
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    frame = np.random.default_rng(3).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    pitch = 1280 * 3 + 256  # a padded row pitch, as decoders use
    padded = np.zeros((720, pitch), np.uint8)
    padded[:, :1280 * 3] = frame.reshape(720, -1)
    with GpuPreprocessor(spec) as pre, DeviceBuffer(padded.shape, np.uint8) as dev:
        dev.upload(padded, pre.stream)
        out = pre.output_buffer(1)
        pre.run_device(dev.ptr, 720, 1280, pitch, out.ptr, "BGR")
        host = np.empty((1,) + pre.image_shape, np.float32)
        out.download(host, pre.stream)
        pre.stream.synchronize()
        with pytest.raises(InputError, match="pitch"):
            pre.run_device(dev.ptr, 720, 1280, 1000, out.ptr)
    assert np.array_equal(host, preprocess_batch([frame], spec, color_order="BGR"))


def test_staging_in_another_thread_gives_the_same_result_without_allocating() -> None:
    import queue
    import threading

    from edge_resnet.cuda import allocation_stats
    from edge_resnet.cuda.preprocess import GpuPreprocessor

    spec = ModelSpec(labels=LABELS)
    frames = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
              for i in range(6)]
    with GpuPreprocessor(spec) as pre:
        expected = pre.to_host(frames, "BGR")  # also sizes the output buffer for six images
        out = pre.output_buffer(6)
        host = np.empty((1,) + pre.image_shape, np.float32)
        # six frames staged at once: the pool holds six slots, the most the hand-off below can
        # have in flight (4 queued + 1 being queued + 1 running)
        pre.run([pre.stage(frame) for frame in frames], out.ptr, "BGR")
        pre.stream.synchronize()
        before = allocation_stats()
        handoff: "queue.Queue[object]" = queue.Queue(4)

        def producer() -> None:
            for _ in range(50):
                for frame in frames:
                    handoff.put(pre.stage(frame))

        thread = threading.Thread(target=producer)
        thread.start()
        for _ in range(50):
            for i in range(len(frames)):
                pre.run([handoff.get()], out.ptr, "BGR")
                out.download(host, pre.stream)
                pre.stream.synchronize()
                assert np.array_equal(host[0], expected[i])
        thread.join()
        assert allocation_stats() == before  # 300 frames through two threads, no allocation
