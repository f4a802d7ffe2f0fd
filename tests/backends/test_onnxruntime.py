"""The ONNX Runtime backend on tiny graphs whose outputs are known exactly."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_resnet.backends import backend_names, load_backend
from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend, onnx_precision
from edge_resnet.core import BackendError, InputError, ModelError, ModelSpec

SPEC = ModelSpec(labels=("a", "b"), resolution=8, resize=None)


def tiny_model(path: Path, input_type: int = TensorProto.FLOAT, spec: Optional[ModelSpec] = SPEC,
               batch: object = "N", extra_meta: Optional[dict] = None) -> Path:
    """logits = [sum of channel 0 means, sum of channel 1 means]: x -> GAP -> Flatten -> Gemm.

    A uint8 input is laid out NHWC and cast in-graph (a fused-preprocessing graph); float16 is
    cast to float.
    """
    nodes: List[onnx.NodeProto] = []
    if input_type == TensorProto.UINT8:
        shape = [batch, 8, 8, 3]
        nodes += [helper.make_node("Cast", ["input"], ["c"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["c"], ["x"], perm=[0, 3, 1, 2])]
    else:
        shape = [batch, 3, 8, 8]
        nodes.append(helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT))
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 3], [1, 0, 0, 0, 1, 0])
    nodes += [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
              helper.make_node("Flatten", ["p"], ["v"]),
              helper.make_node("Gemm", ["v", "W"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", input_type, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = dict(spec.to_metadata()) if spec is not None else {}
    meta.update(extra_meta or {})
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_loads_spec_from_metadata_and_infers(tmp_path: Path) -> None:
    with load_backend("onnxruntime", tiny_model(tmp_path / "m.onnx"), threads=1) as backend:
        assert backend.spec == SPEC
        assert backend.info.precision == "fp32" and backend.info.name == "onnxruntime"
        assert backend.info.details["threads"] == 1
        batch = np.zeros((2, 3, 8, 8), np.float32)
        batch[0, 0], batch[1, 1] = 2.0, -3.0
        out = backend.infer(batch)
    np.testing.assert_allclose(out.logits, [[2.0, 0.0], [0.0, -3.0]])
    assert out.logits.dtype == np.float32 and out.features is None


def test_threads_reach_the_session(tmp_path: Path) -> None:
    backend = OnnxRuntimeBackend(tiny_model(tmp_path / "m.onnx"), threads=2)
    assert backend._session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(InputError, match="threads must be >= 0"):
        OnnxRuntimeBackend(tmp_path / "m.onnx", threads=-1)
    with pytest.raises(InputError, match=r"unknown options: \['device'\]"):
        load_backend("onnxruntime", tmp_path / "m.onnx", device="cuda")


def test_precision_from_metadata_and_graph(tmp_path: Path) -> None:
    tagged = tiny_model(tmp_path / "t.onnx", extra_meta={"edge_resnet.precision": '"int8"'})
    assert OnnxRuntimeBackend(tagged).info.precision == "int8"
    half = OnnxRuntimeBackend(tiny_model(tmp_path / "h.onnx", TensorProto.FLOAT16))
    assert half.info.precision == "fp16"
    out = half.infer(np.full((1, 3, 8, 8), 0.5, np.float32))  # float32 cast to the fp16 input
    np.testing.assert_allclose(out.logits, [[0.5, 0.5]])
    assert onnx_precision(["tensor(float)"], ["Conv", "QuantizeLinear"]) == "int8"
    assert onnx_precision(["tensor(float)"], ["Conv"]) == "fp32"


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_backend("onnxruntime", tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load .*corrupt.onnx"):
        load_backend("onnxruntime", tmp_path / "corrupt.onnx")
    bare = tiny_model(tmp_path / "bare.onnx", spec=None)
    with pytest.raises(ModelError, match="no edge-resnet metadata"):
        load_backend("onnxruntime", bare)
    assert OnnxRuntimeBackend(bare, spec=SPEC).spec == SPEC  # an explicit spec is accepted
    with pytest.raises(ModelError, match=r"output 'probs' not in graph outputs \['logits'\]"):
        OnnxRuntimeBackend(bare, spec=SPEC.with_changes(output_name="probs"))


def test_wrong_inputs_are_input_errors(tmp_path: Path) -> None:
    fused = OnnxRuntimeBackend(tiny_model(tmp_path / "f.onnx", TensorProto.UINT8,
                                          spec=SPEC.with_changes(fused_preprocessing=True)))
    with pytest.raises(InputError, match="fused in-graph and takes uint8 NHWC"):
        fused.infer(np.zeros((1, 8, 8, 3), np.float32))
    np.testing.assert_allclose(fused.infer(np.full((1, 8, 8, 3), 7, np.uint8)).logits, [[7, 7]])
    plain = OnnxRuntimeBackend(tiny_model(tmp_path / "p.onnx"))
    with pytest.raises(InputError, match="takes normalised float NCHW input; got uint8"):
        plain.infer(np.zeros((1, 3, 8, 8), np.uint8))
    with pytest.raises(InputError, match="expected a 4-D batch"):
        plain.infer(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"batch shape \(1, 8, 8, 3\) does not fit"):
        plain.infer(np.zeros((1, 8, 8, 3), np.float32))
    fixed = OnnxRuntimeBackend(tiny_model(tmp_path / "b1.onnx", batch=1))
    with pytest.raises(InputError, match="fixed batch size: use batch size 1"):
        fixed.infer(np.zeros((2, 3, 8, 8), np.float32))


def test_closed_backend_and_unknown_name(tmp_path: Path) -> None:
    backend = load_backend("onnxruntime", tiny_model(tmp_path / "m.onnx"))
    with backend:
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(BackendError, match="backend is closed"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="unknown backend .tensorrtx.; choose one of"):
        load_backend("tensorrtx", tmp_path / "m.onnx")
    assert "onnxruntime" in backend_names()
