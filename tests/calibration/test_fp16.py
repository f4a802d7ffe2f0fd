"""FP16 ONNX: float16 weights/activations, selectable IO type, validated on ORT CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest

from edge_resnet.calibration.fp16 import check_fp16, convert_fp16
from edge_resnet.calibration.readers import ReaderOptions, open_reader


def _float_types(model: onnx.ModelProto) -> set:
    return {onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name
            for i in model.graph.initializer if i.data_type in (1, 10)}


@pytest.mark.parametrize("keep_io", [True, False])
def test_fp16_model_runs_and_agrees(digits_onnx: Path, digits_dirs: Any, digits_spec: Any,
                                    keep_io: bool) -> None:
    fp32 = onnx.load(str(digits_onnx))
    half = convert_fp16(fp32, keep_io_types=keep_io)
    assert _float_types(half) == {"float16"}
    io_type = half.graph.input[0].type.tensor_type.elem_type
    assert io_type == (onnx.TensorProto.FLOAT if keep_io else onnx.TensorProto.FLOAT16)
    batch = next(iter(open_reader(digits_dirs.test_dir, digits_spec,
                                  ReaderOptions(num_images=64, batch_size=64))))
    check = check_fp16(fp32, half, batch)
    print(f"\nfp16 keep_io={keep_io}: max |logit diff| {check.max_abs_diff:.4f}, "
          f"agreement {check.top1_agreement:.3f}")
    assert check.top1_agreement >= 0.98 and check.max_abs_diff < 0.5
