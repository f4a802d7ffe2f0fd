"""Model references (``backend:path``) and the ``--backend auto`` rule, on real ONNX files."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
from onnx import TensorProto, helper

from edge_resnet.backends import load_backend
from edge_resnet.backends.reference import (ModelRef, choose_backend, is_qdq_onnx, open_model,
                                            options_for, parse_model_ref, read_cpu_flags)
from edge_resnet.core import InputError, ModelError, ModelSpec
from fixtures import save_tiny_onnx

SPEC = ModelSpec(labels=("a", "b"), resolution=8, resize=None)


def _tiny(path: Path, qdq: bool) -> Path:
    """x -> [QuantizeLinear -> DequantizeLinear] -> GlobalAveragePool -> Flatten -> logits."""
    nodes, inits = [], [helper.make_tensor("s", TensorProto.FLOAT, [], [0.02]),
                        helper.make_tensor("z", TensorProto.INT8, [], [0])]
    src = "input"
    if qdq:
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        src = "dq"
    nodes += [helper.make_node("GlobalAveragePool", [src], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Slice", ["f", "st", "en", "ax"], ["logits"])]
    inits += [helper.make_tensor(n, TensorProto.INT64, [1], [v])
              for n, v in (("st", 0), ("en", 2), ("ax", 1))]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], initializer=inits)
    return save_tiny_onnx(path, graph, SPEC)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("refs")
    return _tiny(folder / "fp32.onnx", qdq=False), _tiny(folder / "int8.onnx", qdq=True)


@pytest.mark.parametrize("text, default, expected", [
    ("model.onnx", "auto", ("model.onnx", "auto")),
    ("model.onnx", "onnxruntime", ("model.onnx", "onnxruntime")),
    ("tensorrt:engines/model.int8.engine", "auto", ("engines/model.int8.engine", "tensorrt")),
    ("openvino:model.int8.onnx", "onnxruntime", ("model.int8.onnx", "openvino")),
    ("auto:model.onnx", "openvino", ("model.onnx", "auto")),
    ("pytorch:/abs/ckpt.pt", "auto", ("/abs/ckpt.pt", "pytorch")),
    ("/abs/dir/model.onnx", "auto", ("/abs/dir/model.onnx", "auto")),
])
def test_parse_model_ref(text: str, default: str, expected: Tuple[str, str]) -> None:
    ref = parse_model_ref(text, default, {"threads": 2})
    assert (ref.path, ref.backend) == expected
    assert dict(ref.options) == {"threads": 2}


def test_parse_refuses_unknown_backends_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown backend 'tensorrtx'; choose one of: auto, "
                                         r"onnxruntime, openvino, pytorch, tensorrt"):
        parse_model_ref("tensorrtx:model.engine")
    with pytest.raises(InputError, match=r"backend: unknown backend 'nope'"):
        parse_model_ref("model.onnx", "nope")
    odd = tmp_path / "cam:1.onnx"  # an existing file whose name has a colon is a path
    odd.write_bytes(b"")
    assert parse_model_ref(str(odd)) == ModelRef(str(odd), "auto", {})
    assert parse_model_ref(Path("x:y.onnx"), "openvino").path == "x:y.onnx"


def test_is_qdq_onnx_reads_the_graph(tiny: Tuple[Path, Path], tmp_path: Path) -> None:
    fp32, int8 = tiny
    assert not is_qdq_onnx(fp32) and is_qdq_onnx(int8)
    with pytest.raises(InputError, match="does not exist"):
        is_qdq_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 not protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        is_qdq_onnx(junk)


VNNI = {"fpu", "avx2", "avx512_vnni"}
AMX = {"amx_int8", "avx2"}
AVX2 = {"fpu", "avx2", "fma"}
ARM_DOT = {"asimddp", "i8mm"}


@pytest.mark.parametrize("model, flags, installed, exact, backend, why", [
    ("x.engine", AVX2, set(), False, "tensorrt", "TensorRT engine"),
    ("x.plan", VNNI, {"openvino"}, False, "tensorrt", "TensorRT engine"),
    ("x.pt", AVX2, {"openvino"}, False, "pytorch", "PyTorch checkpoint"),
    ("fp32", VNNI, {"openvino"}, False, "onnxruntime", "float ONNX"),
    ("int8", VNNI, {"openvino"}, False, "openvino", "avx512_vnni and OpenVINO installed"),
    ("int8", AMX, {"openvino"}, False, "openvino", "amx_int8"),
    ("int8", {"avx_vnni"}, {"openvino"}, False, "openvino", "avx_vnni"),
    ("int8", VNNI, set(), False, "onnxruntime", "OpenVINO is not installed"),
    ("int8", AVX2, {"openvino"}, False, "onnxruntime", "without VNNI/AMX"),
    ("int8", ARM_DOT, {"openvino"}, False, "onnxruntime", "without VNNI/AMX"),
    ("int8", VNNI, {"openvino"}, True, "onnxruntime", "exact_qdq"),
])
def test_choose_backend_table(tiny: Tuple[Path, Path], model: str, flags: set, installed: set,
                              exact: bool, backend: str, why: str) -> None:
    path = {"fp32": tiny[0], "int8": tiny[1]}.get(model, Path(model))
    name, reason = choose_backend(path, cpu_flags=flags, installed=installed, exact_qdq=exact)
    assert name == backend
    assert why in reason


def test_read_cpu_flags_uses_the_doctor_parser(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse avx2 avx512_vnni\n")
    assert read_cpu_flags(str(cpuinfo)) == {"avx512_vnni"}
    assert read_cpu_flags(str(tmp_path / "none")) == frozenset()


def test_options_for_keeps_onnxruntime_only_options_there() -> None:
    opts = {"threads": 2, "exact_qdq": True}
    assert options_for("onnxruntime", opts) == opts
    assert options_for("openvino", opts) == {"threads": 2}


def test_auto_loads_and_records_why(tiny: Tuple[Path, Path]) -> None:
    fp32, int8 = tiny
    with load_backend("auto", fp32, threads=1) as backend:
        assert backend.info.name == "onnxruntime"
        assert "float ONNX" in backend.info.details["backend_choice"]
        out = backend.infer(np.ones((2, 3, 8, 8), np.float32))
        np.testing.assert_allclose(out.logits, np.ones((2, 2)), rtol=1e-6)
    expected, _ = choose_backend(int8, read_cpu_flags(), _installed(), exact_qdq=True)
    with open_model(ModelRef(str(int8), "auto", {"exact_qdq": True})) as backend:
        assert backend.info.name == expected == "onnxruntime"
        assert backend.info.details["qdq_arithmetic"] == "exact (Q/DQ in float)"
    with open_model(ModelRef(str(fp32), "onnxruntime", {"threads": 1})) as backend:
        assert backend.info.details["backend_choice"] == "asked for (onnxruntime)"


def _installed() -> set:
    from edge_resnet.backends.reference import installed_runtimes

    return set(installed_runtimes())


def test_openvino_ref_drops_the_onnxruntime_option(tiny: Tuple[Path, Path]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    with open_model(ModelRef(str(tiny[0]), "openvino", {"exact_qdq": True})) as backend:
        assert backend.info.name == "openvino"
        out = backend.infer(np.full((1, 3, 8, 8), 0.5, np.float32))
        np.testing.assert_allclose(out.logits, [[0.5, 0.5]], rtol=1e-5)


def test_a_path_with_a_colon_written_as_dot_slash() -> None:
    assert parse_model_ref("./models:v2/m.onnx", "onnxruntime") == \
        ModelRef("./models:v2/m.onnx", "onnxruntime", {})
    with pytest.raises(InputError, match=r"unknown backend 'models'.*write a path that has a "
                                         r"colon as \./PATH"):
        parse_model_ref("models:v2/m.onnx")
