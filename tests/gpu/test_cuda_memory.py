"""The CUDA memory layer on a real GPU: copies, events, mapped memory, reuse, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_resnet.core import InputError
from edge_resnet.cuda import (CudaOutOfMemoryError, DeviceBuffer, Event, InFlightRing,
                              PinnedBuffer, Stream, allocation_stats, copy_async, get_device,
                              mem_info)

gpu = pytest.mark.gpu  # skips with the reason on machines without a CUDA device


@gpu
def test_device_properties() -> None:
    dev = get_device(0)
    assert dev.name and dev.total_memory > 2**30
    assert dev.compute_capability >= (5, 3)
    free, total = mem_info()
    assert 0 < free <= total


@gpu
def test_round_trip_through_device_memory() -> None:
    stream = Stream()
    data = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with PinnedBuffer(data.shape, np.float32) as host, DeviceBuffer(data.shape, np.float32) as a, \
            DeviceBuffer(data.shape, np.float32) as b, PinnedBuffer(data.shape, np.float32) as back:
        host.array[...] = data
        host.upload_to(a, stream)
        copy_async(b.ptr, a.ptr, a.nbytes, stream, "d2d")
        back.download_from(b, stream)
        stream.synchronize()
        assert np.array_equal(back.array, data)
        half = np.zeros((2, 3, 64, 64), np.float32)  # partial download of the first two images
        b.download(half, stream)
        stream.synchronize()
        assert np.array_equal(half, data[:2])
    stream.close()


@gpu
def test_mapped_pinned_memory_is_visible_to_the_device() -> None:
    stream = Stream()
    with PinnedBuffer(1000, np.uint8, mapped=True) as host, DeviceBuffer(1000, np.uint8) as dev:
        host.array[:] = np.arange(1000) % 251
        copy_async(dev.ptr, host.device_ptr, 1000, stream, "d2d")  # device reads host memory
        out = np.zeros(1000, np.uint8)
        dev.download(out, stream)
        stream.synchronize()
        assert np.array_equal(out, np.arange(1000) % 251)


@gpu
def test_events_order_and_time_work() -> None:
    stream = Stream()
    start, end = Event(timing=True), Event(timing=True)
    with PinnedBuffer(64 << 20, np.uint8) as host, DeviceBuffer(64 << 20, np.uint8) as dev:
        start.record(stream)
        for _ in range(4):
            host.upload_to(dev, stream)
        end.record(stream)
        end.synchronize()
        assert end.query()
        elapsed = start.elapsed_ms(end)
        # 256 MiB over PCIe/NVLink-C2C/SoC memory: between 1 and 50 GB/s+ in any real machine
        assert 0.0 < elapsed < 2000.0


@gpu
def test_ring_reuses_its_buffers_without_allocating() -> None:
    stream = Stream()
    ring = InFlightRing(lambda: {"host": PinnedBuffer(1 << 20, np.uint8),
                                 "dev": DeviceBuffer(1 << 20, np.uint8)}, depth=2)
    before = allocation_stats()
    seen = set()
    for i in range(200):
        slot = ring.acquire()
        seen.add(slot.index)
        slot["host"].array[:8] = i
        slot["host"].upload_to(slot["dev"], stream)
        slot.release(stream)
    ring.wait_all()
    assert allocation_stats() == before  # 200 batches, zero allocations
    assert seen == {0, 1}
    ring.close()
    after = allocation_stats()
    assert after["device_frees"] - before["device_frees"] == 2
    assert after["host_frees"] - before["host_frees"] == 2


@gpu
def test_out_of_memory_is_a_clear_error() -> None:
    _, total = mem_info()
    with pytest.raises(CudaOutOfMemoryError, match="smaller batch"):
        DeviceBuffer(2 * total, np.uint8)


@gpu
def test_wrong_dtype_and_size_are_refused() -> None:
    stream = Stream()
    with DeviceBuffer((2, 3), np.float32) as dev:
        with pytest.raises(InputError, match="dtype float64"):
            dev.upload(np.zeros((2, 3)), stream)
        with pytest.raises(InputError, match="does not fit"):
            dev.upload(np.zeros((3, 3), np.float32), stream)
        with pytest.raises(InputError, match="C-contiguous"):
            dev.upload(np.zeros((3, 2), np.float32).T, stream)
    with pytest.raises(InputError, match="positive"):
        DeviceBuffer((0, 3), np.float32)


def _child(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_no_device_is_a_clear_error() -> None:
    """With every GPU hidden (or none at all, as on CI), the error says what to do."""
    code = ("from edge_resnet.cuda import get_device, cuda_available\n"
            "from edge_resnet.core import DependencyError\n"
            "assert not cuda_available()\n"
            "try:\n    get_device()\nexcept DependencyError as e:\n"
            "    print(type(e).__name__, '|', e)\n")
    result = _child(code, {"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    name, _, message = result.stdout.partition("|")
    if name.strip() == "NoCudaDeviceError":
        assert "CPU backend" in message
    else:  # no cuda-python on this machine at all
        assert name.strip() == "DependencyError" and "pip install" in message


def test_missing_cuda_python_is_a_clear_error() -> None:
    code = ("import sys; sys.modules['cuda'] = None; sys.modules['cuda.bindings'] = None\n"
            "from edge_resnet.cuda import get_device\n"
            "from edge_resnet.core import DependencyError\n"
            "try:\n    get_device()\nexcept DependencyError as e:\n    print(e)\n")
    result = _child(code, {})
    assert result.returncode == 0, result.stderr
    assert "cuda-python is not installed" in result.stdout
    assert "edge-resnet[cuda]" in result.stdout
