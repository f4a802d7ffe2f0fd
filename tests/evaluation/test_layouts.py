"""ImageNet data layouts for ``eval``: synset folders and MLPerf's ``val_map.txt``.

An ImageNet-shaped model (the ``random`` source: 1000 classes, ImageNet names and WordNet IDs in
its metadata, random weights; exported at 64 px to stay fast) is evaluated on real colour photos
(scikit-image's) laid out three ways: synset folders, class-name folders and a flat folder with
a val_map. The mapping must give every image the same class index in each layout, so the
reports agree to the last image; the accuracy itself is whatever random weights give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
from edge_resnet.cli import main
from edge_resnet.core import DataError, InputError
from edge_resnet.evaluation.evaluate import evaluate
from edge_resnet.images import ImageFolder, read_label_map
from edge_resnet.preprocessing import preprocess_batch

# photo -> WordNet ID of the class it shows (tabby, coffee mug, space shuttle, ...)
PHOTOS: Dict[str, str] = {"chelsea": "n02123045", "coffee": "n03063599",
                          "rocket": "n04266014", "astronaut": "n04266014",
                          "hubble_deep_field": "n01440764", "immunohistochemistry": "n01440764"}


@pytest.fixture(scope="module")
def imagenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_resnet.export.models import load_model
    from edge_resnet.export.onnx_export import export_onnx

    loaded = load_model("random", resolution=64)
    out = tmp_path_factory.mktemp("imagenet") / "random-imagenet.onnx"
    return export_onnx(loaded.model, loaded.spec, out, weights_sha256=loaded.weights_sha256,
                       source="random").path


@pytest.fixture(scope="module")
def spec(imagenet_onnx: Path) -> Any:
    with OnnxRuntimeBackend(imagenet_onnx) as backend:
        return backend.spec


def _photos() -> List[Tuple[str, np.ndarray]]:
    return [(name, getattr(skdata, name)()) for name in PHOTOS]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory, spec: Any) -> Dict[str, Path]:
    """The same six JPEGs as synset folders, class-name folders and a flat val_map folder."""
    root = tmp_path_factory.mktemp("layouts")
    names = dict(zip(spec.label_ids, spec.labels))
    lines = []
    for i, (photo, image) in enumerate(_photos(), 1):
        wnid = PHOTOS[photo]
        for folder in (root / "synsets" / wnid, root / "names" / names[wnid], root / "flat"):
            folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(image)
        pil.save(root / "synsets" / wnid / f"{photo}.JPEG", quality=95)
        pil.save(root / "names" / names[wnid] / f"{photo}.JPEG", quality=95)
        flat_name = f"ILSVRC2012_val_{i:08d}.JPEG"
        pil.save(root / "flat" / flat_name, quality=95)
        lines.append(f"{flat_name} {spec.label_ids.index(wnid)}")
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    return {"synsets": root / "synsets", "names": root / "names", "flat": root / "flat",
            "val_map": root / "val_map.txt"}


def _expected_indices(spec: Any) -> Dict[str, int]:
    return {photo: spec.label_ids.index(wnid) for photo, wnid in PHOTOS.items()}


def test_export_carries_imagenet_names_and_wordnet_ids(spec: Any) -> None:
    assert spec.num_classes == 1000 and spec.label_ids is not None
    assert (spec.labels[0], spec.label_ids[0]) == ("tench", "n01440764")
    assert (spec.labels[281], spec.label_ids[281]) == ("tabby", "n02123045")


def test_synset_folders_map_to_the_model_class_indices(layouts: Dict[str, Path],
                                                       spec: Any) -> None:
    folder = ImageFolder(layouts["synsets"], labels=spec.labels, label_ids=spec.label_ids)
    got = {r.path.stem: r.label for r in folder.records}
    assert got == _expected_indices(spec)
    assert folder.classes == spec.labels
    by_name = ImageFolder(layouts["names"], labels=spec.labels, label_ids=spec.label_ids)
    assert {r.path.stem: r.label for r in by_name.records} == got


def test_val_map_over_a_flat_folder(layouts: Dict[str, Path], spec: Any) -> None:
    records = read_label_map(layouts["val_map"], layouts["flat"], spec.labels, spec.label_ids)
    expected = list(_expected_indices(spec).values())
    assert [r.label for r in records] == expected
    assert [r.path.name for r in records] == [f"ILSVRC2012_val_{i:08d}.JPEG"
                                              for i in range(1, 7)]
    # classes may also be given by WordNet ID or by name, and comments/blank lines are skipped
    alt = layouts["val_map"].with_name("val_map_ids.txt")
    alt.write_text("# file class\n\n" + "".join(
        f"{r.path.name}{' ' if i % 3 else chr(9)}"  # a tab ends the file name too
        f"{spec.label_ids[r.label] if i % 2 else spec.labels[r.label]}\n"
        for i, r in enumerate(records)))
    assert [r.label for r in read_label_map(alt, layouts["flat"], spec.labels,
                                            spec.label_ids)] == expected


def test_eval_gives_the_same_report_for_every_layout(imagenet_onnx: Path, spec: Any,
                                                     layouts: Dict[str, Path]) -> None:
    reports = {
        name: evaluate(imagenet_onnx, {"again": imagenet_onnx}, layouts[name], batch_size=4,
                       progress=False, labels_file=layouts["val_map"] if name == "flat" else None)
        for name in ("synsets", "names", "flat")}
    # the truth, computed here: argmax of the model's logits against the intended classes
    with OnnxRuntimeBackend(imagenet_onnx) as backend:
        images = [np.asarray(Image.open(layouts["flat"] / f"ILSVRC2012_val_{i:08d}.JPEG")
                             .convert("RGB")) for i in range(1, 7)]
        predicted = backend.infer(preprocess_batch(images, backend.spec)).logits.argmax(1)
    truth = np.asarray(list(_expected_indices(spec).values()))
    counts = np.bincount(truth, minlength=1000).tolist()
    for name, report in reports.items():
        assert report.labeled and report.images_evaluated == 6 and not report.skipped, name
        assert report.class_counts == counts, name
        assert report.reference.top1_correct == int((predicted == truth).sum()), name
        assert report.candidates[0].agreement is not None
        assert report.candidates[0].agreement.agreement == 1.0
        assert report.reference.per_class_correct == reports["synsets"].reference.per_class_correct


def test_eval_cli_takes_a_labels_file(imagenet_onnx: Path, layouts: Dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", str(layouts["flat"]), "--reference", str(imagenet_onnx),
                 "--candidate", str(imagenet_onnx), "--labels-file", str(layouts["val_map"]),
                 "--no-progress"])
    assert code == 0
    assert "6 images, 0 skipped" in capsys.readouterr().out
    code = main(["eval", str(layouts["flat"]), "--reference", str(imagenet_onnx),
                 "--labels-file", str(layouts["val_map"]), "--unlabeled"])
    assert code == 2
    assert "labels file" in capsys.readouterr().err


def test_unknown_synset_is_refused(layouts: Dict[str, Path], spec: Any, tmp_path: Path) -> None:
    root = tmp_path / "val"
    (root / "n01440764").mkdir(parents=True)
    (root / "n99999999").mkdir()
    for sub in ("n01440764", "n99999999"):
        Image.new("RGB", (8, 8)).save(root / sub / "x.png")
    with pytest.raises(DataError, match=r"subfolders \['n99999999'\] are neither among the "
                                        r"model's labels \(tench, .*\) nor its class IDs "
                                        r"\(n01440764, .*is this data for this model"):
        ImageFolder(root, labels=spec.labels, label_ids=spec.label_ids)
    # a model without class IDs: the folders look like WordNet IDs, say so
    with pytest.raises(DataError, match=r"look like WordNet IDs but the model carries no class "
                                        r"IDs"):
        ImageFolder(layouts["synsets"], labels=spec.labels)


def _val_map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "val_map.txt"
    path.write_text(text)
    return path


def test_val_map_errors_name_the_line(layouts: Dict[str, Path], spec: Any,
                                      tmp_path: Path) -> None:
    flat = layouts["flat"]
    cases = [
        ("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000099.JPEG 3\n"
         "ILSVRC2012_val_00000002.JPEG 4\n",
         r"val_map.txt: 1 of 3 listed files are not in .*flat \(line 2: "
         r"ILSVRC2012_val_00000099.JPEG\); point DATA_DIR"),
        ("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 1000\n",
         r"val_map.txt:2: class index 1000 is out of range: the model has 1000 classes "
         r"\(0..999\)"),
        ("ILSVRC2012_val_00000001.JPEG -1\n", r"val_map.txt:1: class index -1 is out of range"),
        ("ILSVRC2012_val_00000001.JPEG n99999999\n",
         r"val_map.txt:1: class 'n99999999' is neither a class index \(0..999\) nor one of"),
        ("ILSVRC2012_val_00000001.JPEG\n", r"val_map.txt:1: expected '<image file> <class "
                                           r"index>'"),
        ("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000001.JPEG 2\n",
         r"val_map.txt:2: ILSVRC2012_val_00000001.JPEG is listed twice \(also line 1\)"),
        ("# nothing\n\n", r"lists no images"),
    ]
    for text, message in cases:
        with pytest.raises(DataError, match=message):
            ImageFolder(flat, labels=spec.labels, label_ids=spec.label_ids,
                        labels_file=_val_map(tmp_path, text))
    with pytest.raises(InputError, match="cannot read labels file"):
        ImageFolder(flat, labels=spec.labels, labels_file=tmp_path / "absent.txt")
    with pytest.raises(InputError, match="cannot be used with unlabeled data"):
        ImageFolder(flat, labels=spec.labels, labeled=False, labels_file=layouts["val_map"])
