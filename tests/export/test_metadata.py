"""The spec written into every export variant is true of that file's graph.

A reader that has nothing but the file (a device, another tool) builds its input from the
metadata: dtype (fused preprocessing), colour order, layout, resolution, input/output names. Each
variant (plain, features, fused BGR, fused RGB) is checked against its graph's real input, then
fed exactly what its metadata says and compared with the plain graph. Colour photos (not the
grey digits) are fed, so a wrong colour order changes the logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skimage import data as skdata

from edge_resnet.core import InputError, ModelError, ModelSpec
from edge_resnet.export.onnx_export import export_onnx
from edge_resnet.preprocessing import preprocess_batch

# variant -> (export options, the input the graph must take: dtype, colour order, layout)
VARIANTS: Dict[str, Any] = {
    "plain": ({}, (onnx.TensorProto.FLOAT, "RGB", "NCHW")),
    "features": ({"with_features": True}, (onnx.TensorProto.FLOAT, "RGB", "NCHW")),
    "fused-bgr": ({"fuse_preprocessing": True, "input_color_order": "BGR"},
                  (onnx.TensorProto.UINT8, "BGR", "NHWC")),
    "fused-rgb": ({"fuse_preprocessing": True, "input_color_order": "RGB"},
                  (onnx.TensorProto.UINT8, "RGB", "NHWC")),
}


@pytest.fixture(scope="module")
def exports(digits_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Each variant exported by today's exporter (the cached fixtures may predate it)."""
    folder = tmp_path_factory.mktemp("variants")
    return {name: export_onnx(digits_model.model, digits_model.spec, folder / f"{name}.onnx",
                              **options).path
            for name, (options, _) in VARIANTS.items()}


@pytest.fixture(scope="module")
def photos() -> List[np.ndarray]:
    """Four colour photos (uint8 RGB) from scikit-image."""
    return [getattr(skdata, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]


def _metadata(path: Path) -> Dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _run(path: Path, spec: ModelSpec, batch: np.ndarray) -> np.ndarray:
    """Run the graph with nothing but ONNX Runtime and the names the metadata gives."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([spec.output_name], {spec.input_name: batch})[0])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_metadata_describes_the_graph_input(variant: str, exports: Dict[str, Path]) -> None:
    dtype, order, layout = VARIANTS[variant][1]
    model = onnx.load(str(exports[variant]))
    spec = ModelSpec.from_metadata(_metadata(exports[variant]))
    assert (spec.color_order, spec.layout) == (order, layout)
    assert spec.fused_preprocessing == (dtype == onnx.TensorProto.UINT8)
    [graph_input] = model.graph.input
    assert graph_input.name == spec.input_name
    assert graph_input.type.tensor_type.elem_type == dtype
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert len(dims) == 4 and dims[0] == "batch"
    assert dims[1:] == list(spec.input_shape(1)[1:])
    assert dims.index(3) == (1 if layout == "NCHW" else 3)  # channel position (res is 32)
    outputs = [o.name for o in model.graph.output]
    assert outputs == [spec.output_name] + ([spec.features_name] if spec.features_name else [])
    assert (spec.features_name is not None) == (variant == "features")
    # no key of an older format is left to contradict the fields
    assert "edge_resnet.input_color_order" not in _metadata(exports[variant])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_feeding_what_the_metadata_says_gives_the_plain_logits(
        variant: str, exports: Dict[str, Path], photos: List[np.ndarray]) -> None:
    plain_spec = ModelSpec.from_metadata(_metadata(exports["plain"]))
    reference = _run(exports["plain"], plain_spec, preprocess_batch(photos, plain_spec))
    spec = ModelSpec.from_metadata(_metadata(exports[variant]))
    batch = preprocess_batch(photos, spec)
    assert batch.shape == spec.input_shape(len(photos))
    assert batch.dtype == (np.uint8 if spec.fused_preprocessing else np.float32)
    logits = _run(exports[variant], spec, batch)
    atol = 1e-4 * max(float(np.abs(reference).max()), 1.0)
    np.testing.assert_allclose(logits, reference, rtol=0, atol=atol)
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol  # a near-tie may flip by rounding alone
    np.testing.assert_array_equal(logits.argmax(1)[clear], reference.argmax(1)[clear])


@pytest.mark.parametrize("variant", ["fused-bgr", "fused-rgb"])
def test_the_other_colour_order_gives_other_logits(
        variant: str, exports: Dict[str, Path], photos: List[np.ndarray]) -> None:
    """The check above can fail: metadata naming the wrong order feeds the wrong channels."""
    spec = ModelSpec.from_metadata(_metadata(exports[variant]))
    lying = spec.with_changes(color_order="RGB" if spec.color_order == "BGR" else "BGR")
    right = _run(exports[variant], spec, preprocess_batch(photos, spec))
    wrong = _run(exports[variant], spec, preprocess_batch(photos, lying))
    scale = float(np.abs(right).max())
    assert float(np.abs(right - wrong).max()) > 1e-2 * max(scale, 1.0)


def _legacy(spec: ModelSpec) -> Dict[str, str]:
    """Metadata as exports before this version wrote it: the network's RGB/NCHW in
    ``color_order``/``layout`` and the fused graph's frame order in ``input_color_order``."""
    meta = spec.to_metadata()
    frame_order = spec.color_order if spec.fused_preprocessing else "RGB"
    meta.update({"edge_resnet.color_order": json.dumps("RGB"),
                 "edge_resnet.layout": json.dumps("NCHW"),
                 "edge_resnet.input_color_order": json.dumps(frame_order)})
    del meta["edge_resnet.label_ids"]
    return meta


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_legacy_metadata_reads_as_the_graph_input(variant: str,
                                                   exports: Dict[str, Path]) -> None:
    spec = ModelSpec.from_metadata(_metadata(exports[variant]))
    assert ModelSpec.from_metadata(_legacy(spec)) == spec


def test_label_ids_round_trip_and_are_checked() -> None:
    spec = ModelSpec(labels=("tench", "goldfish"), label_ids=("n01440764", "n01443537"))
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec
    assert ModelSpec.from_metadata(ModelSpec(labels=("a",)).to_metadata()).label_ids is None
    with pytest.raises(InputError, match="1 label IDs for 2 labels"):
        ModelSpec(labels=("tench", "goldfish"), label_ids=("n01440764",))
    with pytest.raises(InputError, match="label IDs must be unique; duplicates: n01440764"):
        ModelSpec(labels=("tench", "goldfish"), label_ids=("n01440764", "n01440764"))
    bad = spec.to_metadata()
    bad["edge_resnet.layout"] = json.dumps("CHW")
    with pytest.raises(ModelError, match="metadata is invalid: layout must be NCHW or NHWC"):
        ModelSpec.from_metadata(bad)


def test_input_shape_follows_the_layout() -> None:
    spec = ModelSpec(labels=("a", "b"), resolution=32, resize=None)
    assert spec.input_shape(5) == (5, 3, 32, 32)
    assert spec.with_changes(layout="NHWC").input_shape(2) == (2, 32, 32, 3)
