"""Export writes the provenance record (``edge_resnet.artifact``) next to the flat spec keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from edge_resnet import __version__
from edge_resnet.core import ArtifactInfo, ModelSpec
from edge_resnet.export.onnx_export import export_onnx


def test_export_writes_one_json_record(digits_model: Any, tmp_path: Path) -> None:
    result = export_onnx(digits_model.model, digits_model.spec, tmp_path / "m.onnx",
                         weights_sha256="ef" * 32, source="checkpoint:digits.pt")
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    raw = json.loads(meta["edge_resnet.artifact"])
    assert raw["version"] == 1 and raw["precision"] == "fp32"
    info = ArtifactInfo.from_metadata(meta)
    assert info is not None
    assert info.spec == ModelSpec.from_metadata(meta) == result.spec
    assert (info.source_sha256, info.source_kind, info.source) == \
        ("ef" * 32, "weights", "checkpoint:digits.pt")
    assert info.sdk_version == __version__ and info.calibration_method is None
    assert info.created.endswith("Z") and len(info.created) == 20
