"""End to end: tiny ONNX classifiers whose every decision is known, real PNGs, real reports.

The models average each colour channel and apply a linear layer, so on a solid-colour image the
logits are the image's colour (times the weights) and the expected prediction is worked out
below by hand. The reference predicts the largest channel; the "biased" candidate adds 60 to
blue, which flips exactly the images listed in ``EXPECTED``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from edge_resnet.backends import load_backend
from edge_resnet.cli import main
from edge_resnet.core import DataError, InputError, ModelError, ModelSpec
from edge_resnet.evaluation import evaluate, predict, write_report
from edge_resnet.images import ImageFolder

LABELS = ("red", "green", "blue")
SPEC = ModelSpec(labels=LABELS, resolution=8, resize=None, mean=(0.0, 0.0, 0.0),
                 std=(1.0, 1.0, 1.0))

# file -> (class folder, RGB colour). Reference logits = colour; candidate = colour + (0, 0, 60).
IMAGES: Dict[str, Tuple[str, Tuple[int, int, int]]] = {
    "r1.png": ("red", (200, 10, 10)),    # ref red  (right)  cand red  (200,10,70)   right
    "r2.png": ("red", (100, 20, 50)),    # ref red  (right)  cand blue (100,20,110)  wrong
    "r3.png": ("red", (90, 120, 0)),     # ref green (wrong) cand green (90,120,60)  wrong
    "g1.png": ("green", (10, 200, 10)),  # ref green (right) cand green (10,200,70)  right
    "g2.png": ("green", (30, 100, 80)),  # ref green (right) cand blue (30,100,140)  wrong
    "b1.png": ("blue", (10, 10, 200)),   # ref blue (right)  cand blue (10,10,260)   right
    "b2.png": ("blue", (120, 20, 90)),   # ref red  (wrong)  cand blue (120,20,150)  right
}
# Reference right on r1 r2 g1 g2 b1 = 5/7; candidate right on r1 g1 b1 b2 = 4/7.
# Predictions ref [R R G G G B R], cand [R B G G B B B] (files sorted by folder, then name:
# blue/b1 b2, green/g1 g2, red/r1 r2 r3) -> they agree on r1 r3 g1 b1 = 4/7.
REF_TOP1 = 100.0 * 5 / 7
CAND_TOP1 = 100.0 * 4 / 7
DROP = 100.0 * 1 / 7          # 14.2857... points
AGREEMENT = 4 / 7


def make_model(path: Path, bias: Sequence[float] = (0.0, 0.0, 0.0), fused: bool = False,
               spec: ModelSpec = SPEC, scale: float = 255.0, bgr: bool = False) -> Path:
    """x -> GlobalAveragePool -> Flatten -> Gemm(scale * I, bias): logits = mean colour + bias.

    ``fused`` takes uint8 NHWC frames; with ``bgr`` they arrive in BGR order, so the class
    "red" reads input channel 2 (the weight columns are reversed).
    """
    n = spec.num_classes
    weight = np.zeros((n, 3), np.float32)
    weight[np.arange(min(n, 3)), np.arange(min(n, 3))] = scale
    if bgr:
        weight = np.ascontiguousarray(weight[:, ::-1])
        spec = spec.with_changes(color_order="BGR")
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [n, 3], weight.ravel().tolist()),
             helper.make_tensor("B", TensorProto.FLOAT, [n], list(bias))]
    nodes = []
    if fused:
        spec = spec.with_changes(fused_preprocessing=True, layout="NHWC")
        inp = helper.make_tensor_value_info("input", TensorProto.UINT8, ["N", 8, 8, 3])
        inits.append(helper.make_tensor("k", TensorProto.FLOAT, [], [1.0 / 255.0]))
        nodes += [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
                  helper.make_node("Mul", ["t", "k"], ["x"])]
    else:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
        nodes.append(helper.make_node("Identity", ["input"], ["x"]))
    nodes += [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
              helper.make_node("Flatten", ["p"], ["v"]),
              helper.make_node("Gemm", ["v", "W", "B"], ["logits"], transB=1)]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n])
    graph = helper.make_graph(nodes, "tiny", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in spec.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_png(path: Path, colour: Tuple[int, ...], mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), colour).save(path)
    return path


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name, (label, colour) in IMAGES.items():
        write_png(root / label / name, colour)
    return root


@pytest.fixture()
def models(tmp_path: Path) -> Dict[str, Path]:
    return {"ref": make_model(tmp_path / "ref.onnx"),
            "biased": make_model(tmp_path / "biased.onnx", bias=(0.0, 0.0, 60.0)),
            "fused": make_model(tmp_path / "fused.onnx", fused=True),
            "fused_bgr": make_model(tmp_path / "fused_bgr.onnx", fused=True, bgr=True)}


def test_exact_drop_agreement_and_per_class(data: Path, models: Dict[str, Path]) -> None:
    report = evaluate(models["ref"], {"biased": models["biased"]}, data, batch_size=3,
                      progress=False)
    cand = report.candidate("biased")
    assert report.labeled and report.images_evaluated == 7 and not report.skipped
    assert report.reference.top1 == pytest.approx(REF_TOP1)
    assert cand.top1 == pytest.approx(CAND_TOP1)
    assert cand.drop_top1 == pytest.approx(DROP)
    assert cand.top5 is None  # 3 classes: top-5 is meaningless and not reported
    assert cand.agreement is not None and cand.agreement.agreement == pytest.approx(AGREEMENT)
    # Per class (red, green, blue): ref 2/3, 2/2, 1/2; candidate 1/3, 1/2, 2/2.
    assert report.class_counts == [3, 2, 2]
    assert report.reference.per_class_correct == [2, 2, 1]
    assert cand.per_class_correct == [1, 1, 2]
    # Logit statistics equal the ones of the known logits (colour vs colour + (0, 0, 60)).
    colours = np.array([c for _, c in IMAGES.values()], np.float64)
    biased = colours + [0.0, 0.0, 60.0]
    norms = np.linalg.norm(colours, axis=1) * np.linalg.norm(biased, axis=1)
    cos = (colours * biased).sum(1) / norms
    assert cand.agreement.cosine_min == pytest.approx(cos.min(), abs=1e-6)
    assert cand.agreement.max_abs_logit_diff == pytest.approx(60.0, abs=1e-3)
    assert report.gate_passed is None


def test_same_model_and_fused_graph_agree_exactly(data: Path, models: Dict[str, Path]) -> None:
    report = evaluate(models["ref"], [models["ref"], models["fused"], models["fused_bgr"]], data,
                      progress=False)
    for cand in report.candidates:
        assert cand.drop_top1 == 0.0 and cand.top1 == pytest.approx(REF_TOP1)
        assert cand.agreement is not None and cand.agreement.agreement == 1.0
        assert cand.agreement.kl_max < 1e-9 and cand.agreement.cosine_min > 1 - 1e-9
    assert [c.name for c in report.candidates] == ["ref", "fused", "fused_bgr"]


def test_gate_sets_verdict(data: Path, models: Dict[str, Path]) -> None:
    failed = evaluate(models["ref"], {"b": models["biased"]}, data, max_drop=14.0, progress=False)
    assert failed.gate_passed is False
    assert failed.gate_failures == ["b: top-1 drop 14.29 > 14 points"]
    passed = evaluate(models["ref"], {"b": models["biased"]}, data, max_drop=14.3, progress=False)
    assert passed.gate_passed is True


def test_cli_gate_exit_codes_and_report_files(
        data: Path, models: Dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    argv = ["eval", str(data), "--reference", str(models["ref"]), "--candidate",
            str(models["biased"]), "--name", "int8", "--no-progress"]
    prefix = tmp_path / "reports" / "run1"
    assert main(argv + ["--max-drop", "14", "--report", str(prefix)]) == 1
    captured = capsys.readouterr()
    assert "| int8 |" in captured.out and "FAILED" in captured.out
    assert "accuracy gate breached: int8: top-1 drop 14.29 > 14 points (--max-drop)" \
        in captured.err
    saved = json.loads(prefix.with_suffix(".json").read_text())
    assert saved["candidates"][0]["drop_top1"] == pytest.approx(DROP)
    assert saved["gate_passed"] is False
    markdown = prefix.with_suffix(".md").read_text()
    assert "## Per-class top-1 accuracy (%)" in markdown
    assert "| red | 3 | 66.67 | 33.33 |" in markdown
    assert main(argv + ["--max-drop", "15"]) == 0
    assert main(argv) == 0  # no gate: report only


def test_cli_errors_exit_2(data: Path, models: Dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    code = main(["eval", str(data), "--reference", str(tmp_path / "nope.onnx"),
                 "--candidate", str(models["biased"]), "--no-progress"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = main(["eval", str(data), "--reference", str(models["ref"]), "--candidate",
                 str(models["biased"]), "--name", "a", "--name", "b", "--no-progress"])
    assert code == 2 and "2 --name for 1 --candidate" in capsys.readouterr().err


def test_write_report_paths(data: Path, models: Dict[str, Path], tmp_path: Path) -> None:
    report = evaluate(models["ref"], [models["biased"]], data, progress=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    json_path, md_path = write_report(report, out_dir)
    assert (json_path, md_path) == (out_dir / "eval.json", out_dir / "eval.md")
    json_path, md_path = write_report(report, tmp_path / "x" / "r.json")
    assert json_path == tmp_path / "x" / "r.json" and md_path.read_text().startswith("# ")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["r.json", "r.md"]


def test_bad_images_converted_or_skipped(tmp_path: Path, models: Dict[str, Path]) -> None:
    root = tmp_path / "mixed"
    write_png(root / "red" / "rgba.png", (200, 10, 10, 128), "RGBA")         # -> red, right
    write_png(root / "red" / "gray.png", (77,), "L")                          # tie -> red, right
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 10, 200] + [0] * 765)
    (root / "blue").mkdir()
    palette.save(root / "blue" / "palette.png")                               # -> blue, right
    (root / "green").mkdir()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "green" / "g16.png")
    # 16-bit 40000/65535*255 = 155.6 -> grey 156: a tie, predicted red, labeled green: wrong.
    (root / "red" / "zero.png").write_bytes(b"")
    (root / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (root / "blue" / "notes.txt").write_text("not an image")
    report = evaluate(models["ref"], [models["biased"]], root, progress=False)
    assert report.files_considered == 7 and report.images_evaluated == 4
    assert sorted(Path(p).name for p in report.skipped) == ["corrupt.png", "notes.txt", "zero.png"]
    assert "empty file" in report.skipped[str(root / "red" / "zero.png")]
    assert report.reference.top1 == pytest.approx(75.0)
    assert "## Skipped files (3)" in report.to_markdown()


def test_empty_and_unreadable_folders_are_data_errors(tmp_path: Path,
                                                      models: Dict[str, Path]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no files"):
        evaluate(models["ref"], [models["biased"]], tmp_path / "empty", progress=False)
    (tmp_path / "junk" / "red").mkdir(parents=True)
    (tmp_path / "junk" / "red" / "a.jpg").write_bytes(b"no jpeg")
    with pytest.raises(DataError, match="none of the 1 files is a readable image"):
        evaluate(models["ref"], [models["biased"]], tmp_path / "junk", progress=False)
    write_png(tmp_path / "wrong" / "purple" / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match=r"subfolders \['purple'\] are not among the model's"):
        evaluate(models["ref"], [models["biased"]], tmp_path / "wrong", progress=False)


def test_unlabeled_folder_gives_agreement_only(tmp_path: Path, models: Dict[str, Path]) -> None:
    root = tmp_path / "flat"
    for name, (_, colour) in IMAGES.items():
        write_png(root / name, colour)
    report = evaluate(models["ref"], {"b": models["biased"]}, root, max_drop=50.0, progress=False)
    cand = report.candidate("b")
    assert not report.labeled and report.reference.top1 is None and cand.drop_top1 is None
    assert cand.agreement is not None and cand.agreement.agreement == pytest.approx(AGREEMENT)
    # Gate on disagreement: 3/7 = 42.86 points <= 50 passes; <= 40 fails.
    assert report.gate_metric == "top1_disagreement" and report.gate_passed is True
    strict = evaluate(models["ref"], {"b": models["biased"]}, root, max_drop=40.0, progress=False)
    assert strict.gate_failures == ["b: top-1 disagreement 42.86 > 40 points"]


def test_label_mismatch_is_model_error(tmp_path: Path, data: Path,
                                       models: Dict[str, Path]) -> None:
    other = make_model(tmp_path / "other.onnx",
                       spec=SPEC.with_changes(labels=("red", "green", "cyan")))
    with pytest.raises(ModelError, match=r"'other' .*missing \['blue'\], extra \['cyan'\]"):
        evaluate(models["ref"], [other], data, progress=False)
    swapped = make_model(tmp_path / "swapped.onnx",
                         spec=SPEC.with_changes(labels=("green", "red", "blue")))
    with pytest.raises(ModelError, match="another order"):
        evaluate(models["ref"], [swapped], data, progress=False)


def test_num_images_is_a_deterministic_subset(data: Path, models: Dict[str, Path]) -> None:
    first = evaluate(models["ref"], [models["biased"]], data, num_images=4, seed=3, progress=False)
    again = evaluate(models["ref"], [models["biased"]], data, num_images=4, seed=3, progress=False)
    assert first.images_evaluated == 4 and first.to_dict()["candidates"][0]["agreement"] == \
        again.to_dict()["candidates"][0]["agreement"]
    with pytest.raises(InputError, match="must be positive"):
        evaluate(models["ref"], [models["biased"]], data, num_images=0, progress=False)


def test_predict_on_records_and_arrays(data: Path, models: Dict[str, Path]) -> None:
    folder = ImageFolder(data, labels=LABELS)
    with load_backend("onnxruntime", models["fused"]) as backend:
        result = predict(backend, folder, batch_size=2)
        arrays = [np.full((8, 8, 3), c, np.uint8) for _, c in IMAGES.values()]
        direct = predict(backend, arrays, batch_size=4)
    assert result.labels is not None and result.labels.tolist() == [2, 2, 1, 1, 0, 0, 0]
    assert [Path(p).name for p in result.paths] == ["b1.png", "b2.png", "g1.png", "g2.png",
                                                     "r1.png", "r2.png", "r3.png"]
    np.testing.assert_allclose(result.logits[0], [10, 10, 200], atol=1e-3)
    assert direct.labels is None and direct.logits.shape == (7, 3)
    np.testing.assert_allclose(direct.logits[0], [200, 10, 10], atol=1e-3)


def test_backend_options_reach_the_backend(data: Path, models: Dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"unknown options: \['device'\]"):
        evaluate(models["ref"], [models["biased"]], data, backend_options={"device": "GPU"},
                 progress=False)
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        evaluate(models["ref"], [models["biased"]], data, backend="nope", progress=False)
