"""FP16 ONNX: float16 weights and activations, the form TensorRT 11's strongly typed networks
consume (precision comes from the graph, not from builder flags).

Converted with onnxconverter-common's ``float16`` tool; ``keep_io_types`` keeps a float32 input
and logits (Casts at the edges) so callers need not change their buffers. The result is checked
on CPU with ONNX Runtime against the FP32 model on the same batch before it is written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge_resnet.core import CalibrationError, DependencyError

__all__ = ["Fp16Check", "convert_fp16", "check_fp16"]


@dataclass(frozen=True)
class Fp16Check:
    """FP16 vs FP32 logits on one batch."""

    max_abs_diff: float
    top1_agreement: float
    images: int


def convert_fp16(model: "object", keep_io_types: bool = True) -> "object":
    """Return a float16 copy of ``model`` (IO float32 when ``keep_io_types``)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise DependencyError("FP16 conversion needs onnxconverter-common: "
                              "pip install 'edge-resnet[host]'") from exc
    from edge_resnet.calibration.qdq import record_artifact, set_metadata
    from edge_resnet.fingerprints import onnx_graph_sha256

    with warnings.catch_warnings():  # it warns once per tiny weight it rounds to 1e-7
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types,
                                                     disable_shape_infer=False)
    set_metadata(converted, {"edge_resnet.precision": "fp16"})
    record_artifact(converted, model, precision="fp16", calibration_method=None, float_nodes=(),
                    source_sha256=onnx_graph_sha256(model), source_kind="onnx-graph")
    return converted


def check_fp16(fp32: "object", fp16: "object", batch: np.ndarray,
               min_agreement: float = 0.95) -> Fp16Check:
    """Run both on ``batch`` (the one comparator, ONNX Runtime CPU); refuse NaN/inf or gross
    disagreement."""
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.evaluation.comparator import compare_backends

    with OnnxRuntimeBackend(fp32) as ref, OnnxRuntimeBackend(fp16) as half:
        stats = compare_backends(ref, {"fp16": half}, [batch])["fp16"].agreement
    if stats.nonfinite_samples:
        raise CalibrationError("the FP16 model produces NaN/inf on the calibration batch "
                               "(activations overflow float16); keep this model in FP32")
    result = Fp16Check(stats.max_abs_logit_diff, stats.agreement, stats.samples)
    if stats.agreement < min_agreement:
        raise CalibrationError(f"FP16 model agrees with FP32 on only {stats.agreement:.1%} of the "
                               "check batch; refusing to write it")
    return result


def first_batch(batches: "object") -> Optional[np.ndarray]:
    for batch in batches:  # type: ignore[attr-defined]
        return np.asarray(batch)
    return None
