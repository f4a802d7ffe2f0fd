"""The parity proof passes for correct exports and catches wrong normalisation / colour order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
import pytest

from edge_resnet.cli import main
from edge_resnet.core import DataError, InputError, ParityError
from edge_resnet.export.onnx_export import export_onnx
from edge_resnet.export.parity import (check_fused_vs_unfused, check_parity, compare_logits,
                                       export_verified, load_check_images)

WRONG_NORMALISATION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # a common slip


@pytest.fixture(scope="module")
def images(digits_test_images: List[Tuple[np.ndarray, int]]) -> List[np.ndarray]:
    """33 test digits spread over all classes."""
    return [img for img, _ in digits_test_images[::11]]


def _relabel_color_order(path: Path, order: str) -> None:
    """Rewrite only the metadata's input colour order (the graph keeps its own)."""
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "edge_resnet.color_order":
            prop.value = json.dumps(order)
    onnx.save(model, str(path))


def test_digits_export_is_proven(digits_model: Any, digits_onnx: Path,
                                 images: List[np.ndarray]) -> None:
    report = check_parity(digits_model.model, digits_onnx, images, digits_model.spec)
    assert report.ok and report.n_images == 33
    assert 0 < report.max_abs_diff < 1e-3 and report.mean_abs_diff <= report.max_abs_diff
    assert report.top1_agreement == 1.0 and report.min_cosine > 0.99999
    data = report.to_dict()
    assert data["ok"] is True and data["tolerance"] == pytest.approx(report.tolerance)
    assert "parity ok" in report.summary()


def test_wrong_normalisation_is_caught(digits_model: Any, tmp_path: Path,
                                       images: List[np.ndarray]) -> None:
    wrong = digits_model.spec.with_changes(**WRONG_NORMALISATION)
    for fuse in (False, True):  # metadata only (unfused) and in-graph constants (fused)
        out = export_onnx(digits_model.model, wrong, tmp_path / f"wrong{fuse}.onnx",
                          fuse_preprocessing=fuse).path
        with pytest.raises(ParityError, match="parity FAILED") as info:
            check_parity(digits_model.model, out, images, digits_model.spec)
        assert "check mean/std, colour order" in str(info.value)


def test_swapped_channel_order_is_caught(digits_model: Any, digits_onnx: Path, tmp_path: Path,
                                         images: List[np.ndarray]) -> None:
    # Colour digits so that the channel order matters (the originals are grey).
    tinted = [np.ascontiguousarray(img * np.array([1.0, 0.6, 0.2])).astype(np.uint8)
              for img in images]
    path = export_onnx(digits_model.model, digits_model.spec, tmp_path / "bgr.onnx",
                       fuse_preprocessing=True, input_color_order="BGR").path
    assert check_parity(digits_model.model, path, tinted, digits_model.spec).ok
    _relabel_color_order(path, "RGB")  # frames now arrive RGB into a BGR graph
    with pytest.raises(ParityError, match="parity FAILED"):
        check_parity(digits_model.model, path, tinted, digits_model.spec)
    with pytest.raises(ParityError, match="parity FAILED"):
        check_fused_vs_unfused(path, digits_onnx, tinted)


def test_labels_and_arguments_are_checked(digits_model: Any, digits_onnx: Path,
                                          images: List[np.ndarray]) -> None:
    spec = digits_model.spec
    renamed = spec.with_changes(labels=tuple(f"digit {x}" for x in spec.labels))
    with pytest.raises(ParityError, match="labels"):
        check_parity(digits_model.model, digits_onnx, images, renamed)
    with pytest.raises(InputError, match="at least one image"):
        check_parity(digits_model.model, digits_onnx, [], spec)
    with pytest.raises(InputError, match="atol must be positive"):
        check_parity(digits_model.model, digits_onnx, images, spec, atol=0.0)
    with pytest.raises(InputError, match="top-1 agreement must be in"):
        check_parity(digits_model.model, digits_onnx, images, spec, min_top1_agreement=1.5)
    with pytest.raises(InputError, match="not the fused graph's"):
        check_parity(digits_model.model, digits_onnx, images,
                     spec.with_changes(fused_preprocessing=True))
    with pytest.raises(InputError, match="give the fused export"):
        check_fused_vs_unfused(digits_onnx, digits_onnx, images)


def test_compare_logits_numbers() -> None:
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    cand = ref.copy()
    cand[2] = [0.0, 1.5, 0.0]  # top-1 flips on one of four rows
    report = compare_logits(ref, cand, reference_name="r", candidate_name="c", atol=0.1,
                            min_top1_agreement=0.5, rtol=0.0)
    assert report.max_abs_diff == 1.5 and report.mean_abs_diff == pytest.approx(2.5 / 12)
    assert report.top1_agreement == 0.75 and not report.ok
    assert report.min_cosine == pytest.approx(0.0)
    with pytest.raises(ParityError, match=r"shape \(4, 2\)"):
        compare_logits(ref, ref[:, :2], reference_name="r", candidate_name="c")


def test_failed_proof_leaves_no_file(digits_model: Any, tmp_path: Path,
                                     images: List[np.ndarray]) -> None:
    out = tmp_path / "models" / "proven.onnx"
    with pytest.raises(ParityError, match="parity FAILED"):  # FP32 kernels never agree to 1e-12
        export_verified(digits_model.model, digits_model.spec, out, images[:8], atol=1e-12,
                        rtol=0.0)
    assert list(out.parent.iterdir()) == []
    result, report = export_verified(digits_model.model, digits_model.spec, out, images[:8],
                                     fuse_preprocessing=True, input_color_order="RGB")
    assert report is not None and report.ok and result.path == out
    assert [p.name for p in out.parent.iterdir()] == ["proven.onnx"]


def test_check_images_from_folder_and_digits(digits_dirs: Any, tmp_path: Path) -> None:
    chosen = load_check_images(digits_dirs.test_dir, count=5)
    assert len(chosen.images) == 5 and str(digits_dirs.test_dir) in chosen.description
    assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img in chosen.images)
    bundled = load_check_images(None, count=7)
    assert len(bundled.images) == 7 and "scikit-learn digits" in bundled.description
    # tinted, so that a channel-order mistake changes the logits (the digits are grey)
    assert all(np.ptp(img.reshape(-1, 3).max(0)) > 20 for img in bundled.images)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="none of the sampled files"):
        load_check_images(tmp_path, count=3)


def test_cli_exports_and_proves(digits_checkpoint: Path, digits_dirs: Any, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "cli.onnx", tmp_path / "cli.json"
    code = main(["export", str(digits_checkpoint), "--out", str(out), "--fuse-preprocessing",
                 "--features", "--check-data", str(digits_dirs.test_dir), "--check-count", "16",
                 "--report", str(report)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "parity ok" in printed and "16 images from" in printed and "uint8 BGR" in printed
    data = json.loads(report.read_text())
    assert data["parity"]["ok"] is True and data["parity"]["n_images"] == 16
    assert data["export"]["output_names"] == ["logits", "features"]


def test_cli_fails_with_exit_2_and_no_file(digits_checkpoint: Path, digits_dirs: Any,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "strict.onnx"
    code = main(["export", str(digits_checkpoint), "--out", str(out), "--check-data",
                 str(digits_dirs.test_dir), "--check-count", "4", "--atol", "1e-12",
                 "--rtol", "0"])
    assert code == 2 and not out.exists() and list(tmp_path.iterdir()) == []
    assert "parity FAILED" in capsys.readouterr().err
    assert main(["export", "random", "--out", str(out), "--opset", "13", "--no-check"]) == 2
    assert "opset 13 is not supported" in capsys.readouterr().err


def test_full_resolution_random_resnet50(tmp_path: Path) -> None:
    """224x224 with ImageNet preprocessing (resize 256 + crop) on real photos, fused BGR."""
    skdata = pytest.importorskip("skimage.data")
    from edge_resnet.export.models import load_model

    photos = [getattr(skdata, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]
    loaded = load_model("random", num_classes=1000)
    result, report = export_verified(loaded.model, loaded.spec, tmp_path / "r50.onnx", photos,
                                     fuse_preprocessing=True, input_color_order="BGR")
    assert result.input_shape == ["batch", 224, 224, 3] and loaded.spec.resize == 256
    assert report is not None and report.ok and report.top1_agreement == 1.0
