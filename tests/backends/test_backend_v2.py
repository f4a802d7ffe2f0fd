"""Backend v2: typed options, model references, activate/deactivate in the pipeline's inference
thread, reusable input buffers, submit/wait with two batches in flight, batch-profile checks."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
from onnx import TensorProto, helper

from edge_resnet.backends import load_backend
from edge_resnet.backends.base import BatchProfile
from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
from edge_resnet.backends.options import (OnnxRuntimeOptions, OpenVinoOptions, PyTorchOptions,
                                          TensorRTOptions, typed_options)
from edge_resnet.backends.reference import ModelRef, open_model
from edge_resnet.core import BackendError, InputError, ModelSpec
from edge_resnet.preprocessing import preprocess_batch
from edge_resnet.runtime.pipeline import Pipeline, PipelineConfig
from edge_resnet.runtime.sources import create_source
from fixtures import save_tiny_onnx


def _images(digits_test_images: List[Tuple[np.ndarray, int]], n: int, start: int = 0
            ) -> List[np.ndarray]:
    return [image for image, _ in digits_test_images[start:start + n]]


@pytest.mark.parametrize("make, field", [
    (lambda: OnnxRuntimeOptions(threads=-1), "OnnxRuntimeOptions.threads must be >= 0"),
    (lambda: OnnxRuntimeOptions(threads=True), "OnnxRuntimeOptions.threads"),
    (lambda: OnnxRuntimeOptions(exact_qdq="yes"), "OnnxRuntimeOptions.exact_qdq"),
    (lambda: OnnxRuntimeOptions(providers=[""]), "OnnxRuntimeOptions.providers"),
    (lambda: OpenVinoOptions(hint="FAST"), "OpenVinoOptions.hint must be LATENCY or THROUGHPUT"),
    (lambda: OpenVinoOptions(inference_precision="int4"), "f32, bf16 or f16"),
    (lambda: OpenVinoOptions(device=""), "OpenVinoOptions.device"),
    (lambda: TensorRTOptions(dla_core=-1), "TensorRTOptions.dla_core must be an int >= 0 or None"),
    (lambda: TensorRTOptions(profile=-1), "TensorRTOptions.profile"),
    (lambda: TensorRTOptions(device="0"), "TensorRTOptions.device"),
    (lambda: PyTorchOptions(device="meta"), "PyTorchOptions.device must be auto, cpu or cuda"),
    (lambda: PyTorchOptions(precision="int8"), "PyTorchOptions.precision must be fp32 or fp16"),
    (lambda: PyTorchOptions(max_graphs=0), "PyTorchOptions.max_graphs"),
])
def test_options_are_checked_when_made(make: Any, field: str) -> None:
    with pytest.raises(InputError, match=field):
        make()


def test_options_are_frozen_and_hashable() -> None:
    opts = OnnxRuntimeOptions(threads=2, providers=["CPUExecutionProvider"])
    assert opts.providers == ("CPUExecutionProvider",)  # a list becomes a tuple
    assert hash(opts) == hash(OnnxRuntimeOptions(threads=2, providers=("CPUExecutionProvider",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.threads = 3  # type: ignore[misc]
    assert TensorRTOptions(dla_core=1, profile=2).dla_core == 1


def test_generic_settings_become_the_backends_options() -> None:
    settings = {"threads": 2, "exact_qdq": True}
    assert typed_options("onnxruntime", settings) == OnnxRuntimeOptions(threads=2,
                                                                         exact_qdq=True)
    # exact_qdq belongs to ONNX Runtime: the other backends leave it out instead of refusing
    assert typed_options("openvino", settings) == OpenVinoOptions(threads=2)
    assert typed_options("tensorrt", {"threads": 0}) == TensorRTOptions()
    assert typed_options("pytorch", None) == PyTorchOptions()
    with pytest.raises(InputError, match=r"openvino backend got unknown options: \['providers'\]"):
        typed_options("openvino", {"providers": ["x"]})
    with pytest.raises(InputError, match="OpenVinoOptions are options of the openvino backend, "
                                         "not onnxruntime"):
        typed_options("onnxruntime", OpenVinoOptions())


def test_load_by_reference_with_typed_options(digits_onnx: Path,
                                              digits_test_images: List[Tuple[np.ndarray, int]]
                                              ) -> None:
    opts = OnnxRuntimeOptions(threads=1)
    with open_model(ModelRef(str(digits_onnx), "onnxruntime", opts)) as typed, \
            load_backend("onnxruntime", digits_onnx, threads=1) as keywords:
        assert typed.options == keywords.options == opts  # type: ignore[attr-defined]
        assert typed.info.details["threads"] == 1
        batch = preprocess_batch(_images(digits_test_images, 4), typed.spec)
        np.testing.assert_array_equal(typed.infer(batch).logits, keywords.infer(batch).logits)
    with pytest.raises(InputError, match="OpenVinoOptions are options of the openvino backend"):
        ModelRef(str(digits_onnx), "onnxruntime", OpenVinoOptions())
    with pytest.raises(InputError, match="auto chose the onnxruntime backend"):
        open_model(ModelRef(str(digits_onnx), "auto", OpenVinoOptions()))
    with pytest.raises(InputError, match="not both"):
        load_backend("onnxruntime", digits_onnx, opts, threads=2)
    with pytest.raises(InputError, match="OpenVinoOptions are options of the openvino backend"):
        load_backend("onnxruntime", digits_onnx, OpenVinoOptions())


class _Recording(OnnxRuntimeBackend):
    """ONNX Runtime that notes the thread of each activate, batch and deactivate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: List[Tuple[str, int]] = []

    def _activate(self) -> None:
        self.calls.append(("activate", threading.get_ident()))

    def _deactivate(self) -> None:
        self.calls.append(("deactivate", threading.get_ident()))

    def _run(self, batch: np.ndarray) -> Any:
        self.calls.append(("run", threading.get_ident()))
        return super()._run(batch)


def test_pipeline_activates_in_its_inference_thread(digits_onnx: Path, digits_dirs: Any) -> None:
    folder = sorted(Path(digits_dirs.test_dir).iterdir())[0]
    with _Recording(digits_onnx, OnnxRuntimeOptions(threads=1)) as backend:
        snap = Pipeline(backend, create_source(str(folder)), [],
                        PipelineConfig(max_batch=2, max_frames=6)).run()
        assert snap["counts"]["processed"] == 6
        kinds = [kind for kind, _ in backend.calls]
        assert kinds[0] == "activate" and kinds[-1] == "deactivate" and "run" in kinds
        assert kinds.count("activate") == kinds.count("deactivate") == 1
        threads = {ident for _, ident in backend.calls}
        assert len(threads) == 1 and threading.get_ident() not in threads
        assert not backend.active  # left as the pipeline found it
        # an active backend stays active (and is not activated again) after a pipeline run
        backend.activate()
        Pipeline(backend, create_source(str(folder)), [], PipelineConfig(max_frames=2)).run()
        assert backend.active and [k for k, _ in backend.calls].count("activate") == 2


def test_activate_and_deactivate_are_idempotent(digits_onnx: Path,
                                                digits_test_images: List[Tuple[np.ndarray, int]]
                                                ) -> None:
    backend = _Recording(digits_onnx)
    backend.activate()
    backend.activate()
    backend.deactivate()
    backend.deactivate()
    assert [k for k, _ in backend.calls] == ["activate", "deactivate"]
    backend.infer(preprocess_batch(_images(digits_test_images, 1), backend.spec))
    assert backend.active  # a direct infer activates in the caller's thread
    backend.close()
    assert [k for k, _ in backend.calls][-1] == "deactivate" and not backend.active
    with pytest.raises(BackendError, match="backend is closed"):
        backend.activate()


def test_input_buffer_is_reused_and_preprocessed_into(
        digits_onnx: Path, digits_fused_onnx: Path,
        digits_test_images: List[Tuple[np.ndarray, int]]) -> None:
    images = _images(digits_test_images, 4)
    for model in (digits_onnx, digits_fused_onnx):
        with load_backend("onnxruntime", model, threads=1) as backend:
            buf4 = backend.input_buffer(4)
            assert buf4.shape == backend.spec.input_shape(4)
            assert buf4.dtype == backend.input_dtype  # type: ignore[attr-defined]
            buf2 = backend.input_buffer(2)
            assert buf2.ctypes.data == buf4.ctypes.data and buf2.shape[0] == 2
            assert not np.shares_memory(backend.input_buffer(4, slot=1), buf4)
            filled = preprocess_batch(images, backend.spec, out=backend.input_buffer(4))
            assert filled.ctypes.data == buf4.ctypes.data
            expected = preprocess_batch(images, backend.spec)
            np.testing.assert_array_equal(buf4, expected)  # same numbers as a fresh batch
            np.testing.assert_array_equal(backend.wait(backend.submit(4)).logits,
                                          backend.infer(expected).logits)
            grown = backend.input_buffer(8)  # larger than the slot holds: a new, larger one
            assert grown.shape[0] == 8 and backend.input_buffer(3).ctypes.data == \
                grown.ctypes.data
            with pytest.raises(InputError, match="out has shape"):
                preprocess_batch(images, backend.spec, out=backend.input_buffer(2))


def test_submit_and_wait_with_two_in_flight(digits_onnx: Path,
                                            digits_test_images: List[Tuple[np.ndarray, int]]
                                            ) -> None:
    with load_backend("onnxruntime", digits_onnx, threads=1) as backend, \
            load_backend("onnxruntime", digits_onnx, threads=1) as other:
        a = preprocess_batch(_images(digits_test_images, 3), backend.spec)
        b = preprocess_batch(_images(digits_test_images, 5, start=3), backend.spec)
        first, second = backend.submit(a), backend.submit(b)
        assert first.done and second.done  # CPU backends finish inside submit
        with pytest.raises(BackendError, match="2 batches are already in flight"):
            backend.submit(a)
        # waited for out of order, each handle still gives its own batch's outputs
        np.testing.assert_array_equal(backend.wait(second).logits, backend.infer(b).logits)
        np.testing.assert_array_equal(backend.wait(first).logits, backend.infer(a).logits)
        assert backend.wait(backend.submit(b)).logits.shape == (5, backend.spec.num_classes)
        with pytest.raises(InputError, match="already called"):
            backend.wait(first)
        with pytest.raises(InputError, match="handle of another backend"):
            other.wait(backend.submit(a))
        with pytest.raises(InputError, match="fill that buffer first"):
            other.submit(2)


def _fixed_batch_onnx(path: Path, batch: int) -> Path:
    """x (batch x 3 x 8 x 8) -> GAP -> Flatten -> logits (batch x 3): a fixed batch dimension."""
    spec = ModelSpec(labels=("a", "b", "c"), resolution=8, resize=None)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["p"]),
         helper.make_node("Flatten", ["p"], ["logits"])], "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])])
    return save_tiny_onnx(path, graph, spec)


def test_batch_profile_checks(tmp_path: Path, digits_dirs: Any) -> None:
    backend = load_backend("onnxruntime", _fixed_batch_onnx(tmp_path / "b2.onnx", 2))
    assert backend.batch_profile == BatchProfile(2, 2, 2, "fixed batch dimension")
    with pytest.raises(InputError, match="fixed batch size: use batch size 2"):
        backend.input_buffer(3)
    with pytest.raises(InputError, match="fixed batch size: use batch size 2"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    out = backend.infer(np.ones((2, 3, 8, 8), np.float32)).logits
    np.testing.assert_allclose(out, np.ones((2, 3)))
    folder = sorted(Path(digits_dirs.test_dir).iterdir())[0]
    with pytest.raises(InputError, match=r"max_batch=4 exceeds what the model takes"):
        Pipeline(backend, create_source(str(folder)), [], PipelineConfig(max_batch=4))
    with pytest.raises(InputError, match=r"takes batches of 2..2 .* also sends smaller ones"):
        Pipeline(backend, create_source(str(folder)), [], PipelineConfig(max_batch=2))
    # an engine-style min/opt/max profile: the message names it and the way out
    backend._batch_profile = BatchProfile(1, 4, 8, "optimization profile 0")
    backend._profile_owner = "engine's"
    backend.check_batch_size(8)
    with pytest.raises(InputError, match=r"batch of 9 is outside the engine's profile 1..8 "
                                         r"\(optimization profile 0, opt 4\) of input 'input'.*"
                                         r"--engine-batch MIN:OPT:MAX` covering 9"):
        backend.input_buffer(9)
    backend.close()


class _Counting(OnnxRuntimeBackend):
    """ONNX Runtime that notes the most batches it had in flight at once."""

    peak = 0

    def submit(self, batch: Any, slot: int = 0) -> Any:
        handle = super().submit(batch, slot)
        self.peak = max(self.peak, len(self._handles()))
        return handle


def test_comparator_keeps_two_batches_in_flight(digits_onnx: Path,
                                                digits_test_images: List[Tuple[np.ndarray, int]]
                                                ) -> None:
    from edge_resnet.evaluation.comparator import run_backend

    with _Counting(digits_onnx, OnnxRuntimeOptions(threads=1)) as backend:
        batches = [preprocess_batch(_images(digits_test_images, 3, start=3 * i), backend.spec)
                   for i in range(4)]
        logits = run_backend(backend, iter(batches), limit=10)
        assert backend.peak == 2 and not backend._handles()
        expected = np.concatenate([backend.infer(b).logits for b in batches])[:10]
        np.testing.assert_array_equal(logits, expected)
