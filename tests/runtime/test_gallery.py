"""Embedding gallery on real data: the ten digits as identities, one left out as a stranger.

(The digits model was trained on all ten classes, so "9" is a stranger to the gallery, not to
the embedding; the honest open-set protocol is in tests/faceid.)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from edge_resnet.backends import load_backend
from edge_resnet.cli import main
from edge_resnet.core import DataError, InputError, ModelError
from edge_resnet.images import SkipCounter, read_image
from edge_resnet.runtime.gallery import (Gallery, embed_identities, embed_images, enroll,
                                         group_by_identity)
from edge_resnet.runtime.postprocess import UNKNOWN
from fixtures import load_labeled_images

LEFT_OUT = "9"


@pytest.fixture(scope="module")
def enrol_dir(digits_dirs: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits/train with identity 9 left out (symlinks, no copies)."""
    root = tmp_path_factory.mktemp("enrol")
    for sub in sorted(Path(digits_dirs.train_dir).iterdir()):
        if sub.is_dir() and sub.name != LEFT_OUT:
            os.symlink(sub, root / sub.name)
    return root


@pytest.fixture(scope="module")
def one_photo_dir(digits_dirs: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One digits/train image per identity 0-8: the watch-list case."""
    root = tmp_path_factory.mktemp("one-photo")
    for sub in sorted(Path(digits_dirs.train_dir).iterdir()):
        if sub.is_dir() and sub.name != LEFT_OUT:
            (root / sub.name).mkdir()
            first = sorted(sub.iterdir())[0]
            os.symlink(first, root / sub.name / first.name)
    return root


@pytest.fixture(scope="module")
def test_features(digits_features_onnx: Path, digits_dirs: Any) -> Dict[str, Any]:
    test = load_labeled_images(digits_dirs.test_dir)
    classes = sorted(p.name for p in Path(digits_dirs.test_dir).iterdir() if p.is_dir())
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        feats = embed_images(backend, [img for img, _ in test])
    return {"feats": feats, "names": [classes[y] for _, y in test]}


@pytest.fixture(scope="module")
def gallery_and_scores(digits_features_onnx: Path, enrol_dir: Path, test_features: Dict[str, Any],
                       tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        gallery = enroll(backend, enrol_dir)
    path = gallery.save(tmp_path_factory.mktemp("gallery") / "digits.npz")
    matches = Gallery.load(path).match(test_features["feats"], gallery.suggested_threshold)
    return {"gallery": gallery, "path": path, "names": test_features["names"],
            "matches": matches}


def test_enrolment_is_unit_norm_means(gallery_and_scores: Dict[str, Any]) -> None:
    gallery = gallery_and_scores["gallery"]
    assert gallery.names == [str(d) for d in range(9)]
    assert gallery.embeddings.shape == (9, 2048)
    np.testing.assert_allclose(np.linalg.norm(gallery.embeddings, axis=1), 1.0, atol=1e-5)
    assert all(n > 100 for n in gallery.counts)
    info = gallery.threshold_info
    assert 0.0 < gallery.suggested_threshold < 1.0
    assert info["target_far"] == 0.01 and info["impostor_scores"] == sum(gallery.counts)
    assert info["genuine_scores"] == sum(gallery.counts)      # leave-one-out: every image
    assert info["estimated_far"] <= 0.01


def test_threshold_holds_the_target_far_on_the_enrolment_impostors(
        gallery_and_scores: Dict[str, Any], digits_features_onnx: Path, enrol_dir: Path) -> None:
    """Recompute the impostor pairs independently (each enrolment image against every other
    identity's gallery vector): the union bound 9 x FMR is at most 1 % at the threshold, the
    highest pair score below it would break it (it is the lowest such threshold), and each
    image's best impostor score passes at most 1 % of the time."""
    gallery = gallery_and_scores["gallery"]
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        blocks = [embed_images(backend, _images(enrol_dir / name)) for name in gallery.names]
    rows = [np.delete(b @ gallery.embeddings.T, i, axis=1) for i, b in enumerate(blocks)]
    pairs = np.concatenate([r.ravel() for r in rows])
    impostor = np.concatenate([r.max(axis=1) for r in rows])
    t, info, k = gallery.suggested_threshold, gallery.threshold_info, len(gallery.names)
    assert impostor.size == sum(gallery.counts) == info["impostor_scores"]
    assert pairs.size == sum(gallery.counts) * (k - 1) == info["impostor_pairs"]
    assert info["resolved"] and k * np.mean(pairs >= t) <= 0.01
    assert k * np.mean(pairs >= pairs[pairs < t].max()) > 0.01
    assert np.mean(impostor >= t) <= 0.01
    assert info["estimated_far"] == pytest.approx(np.mean(impostor >= t))


def _images(folder: Path) -> List[np.ndarray]:
    from edge_resnet.images import read_image

    return [read_image(p) for p in sorted(folder.iterdir())]


def test_known_identities_match_on_the_other_split(gallery_and_scores: Dict[str, Any]) -> None:
    names, matches = gallery_and_scores["names"], gallery_and_scores["matches"]
    known = [(n, m) for n, m in zip(names, matches) if n != LEFT_OUT]
    correct = np.mean([m.identity == n for n, m in known])
    nearest = np.mean([m.best == n for n, m in known])
    print(f"known: matched {correct:.3f}, nearest identity correct {nearest:.3f}, n={len(known)}")
    assert nearest >= 0.95
    assert correct >= 0.5


def test_left_out_identity_similarities_are_lower(gallery_and_scores: Dict[str, Any]) -> None:
    names, matches = gallery_and_scores["names"], gallery_and_scores["matches"]
    strangers = [m for n, m in zip(names, matches) if n == LEFT_OUT]
    rejected = np.mean([m.identity == UNKNOWN for m in strangers])
    known_sims = [m.similarity for n, m in zip(names, matches) if n != LEFT_OUT]
    stranger_sims = [m.similarity for m in strangers]
    print(f"unknown '{LEFT_OUT}': rejected {rejected:.3f} of {len(strangers)}; similarity "
          f"known median {np.median(known_sims):.3f}, stranger median "
          f"{np.median(stranger_sims):.3f}")
    assert len(strangers) > 20
    assert np.median(stranger_sims) < np.median(known_sims)
    assert all(m.best != LEFT_OUT and m.threshold == gallery_and_scores["gallery"]
               .suggested_threshold for m in strangers)


def test_one_photo_per_identity_gets_a_usable_threshold(
        digits_features_onnx: Path, one_photo_dir: Path, test_features: Dict[str, Any]) -> None:
    """The issue's case: one photo each gave threshold 1.0 and 0 % matched. Now the threshold
    comes from the 9 impostor scores alone (no self-matches) and known faces do match."""
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        gallery = enroll(backend, one_photo_dir)
    info = gallery.threshold_info
    assert gallery.counts == [1] * 9
    assert info["genuine_scores"] == 0 and info["estimated_tar"] is None
    assert info["impostor_scores"] == 9 and len(info["warnings"]) == 2
    assert gallery.suggested_threshold < 1.0
    assert gallery.suggested_threshold > info["impostor_max"]     # FAR 1 % < 1/9: above all
    known = [(f, n) for f, n in zip(test_features["feats"], test_features["names"])
             if n != LEFT_OUT]
    matches = gallery.match(np.stack([f for f, _ in known]), gallery.suggested_threshold)
    tar = np.mean([m.identity == n for m, (_, n) in zip(matches, known)])
    print(f"one photo per identity: threshold {gallery.suggested_threshold:.4f}, "
          f"known matched {tar:.3f}")
    assert tar > 0.0


def test_gallery_file_round_trip_and_checks(gallery_and_scores: Dict[str, Any],
                                            digits_onnx: Path, digits_dirs: Any,
                                            tmp_path: Path) -> None:
    gallery, path = gallery_and_scores["gallery"], gallery_and_scores["path"]
    loaded = Gallery.load(path)
    assert loaded.names == gallery.names and loaded.fingerprint == gallery.fingerprint
    assert loaded.threshold_info == gallery.threshold_info
    assert loaded.suggested_threshold == gallery.suggested_threshold
    np.testing.assert_array_equal(loaded.embeddings, gallery.embeddings)
    with pytest.raises(ModelError, match="not match"):
        loaded.match(np.ones((1, 10), np.float32), 0.5)
    with pytest.raises(InputError, match=".npz"):
        gallery.save(tmp_path / "g.bin")
    with load_backend("onnxruntime", digits_onnx) as plain:        # no features output
        with pytest.raises(ModelError, match="no features output"):
            enroll(plain, digits_dirs.test_dir)


def test_cli_enroll_and_run_with_gallery(digits_features_onnx: Path, enrol_dir: Path,
                                         digits_dirs: Any, gallery_and_scores: Dict[str, Any],
                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CLI path (image-folder source, BGR frames, pipeline) gives the library's matches."""
    out = tmp_path / "g.npz"
    assert main(["gallery", "enroll", str(enrol_dir), "--model", str(digits_features_onnx),
                 "--out", str(out), "--threads", "2"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["identities"] == 9 and out.is_file() and info["signed"] is False
    assert info["match_threshold"] == round(gallery_and_scores["gallery"].suggested_threshold, 6)
    # the FAR the enrolment can resolve: K identities / (N images x (K - 1) other identities)
    assert info["far_resolution"] == pytest.approx(9 / (info["images"] * 8))
    assert info["resolved"] is (0.01 >= info["far_resolution"])
    assert main(["gallery", "enroll", str(enrol_dir), "--model", str(digits_features_onnx),
                 "--out", str(tmp_path / "strict.npz"), "--threads", "2",
                 "--target-far", "1e-6", "--require-resolved"]) == 2
    err = capsys.readouterr().err
    assert "--target-far 1e-06 cannot be resolved" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "strict.npz").exists()
    events_path = tmp_path / "ids.jsonl"
    assert main(["run", str(digits_features_onnx), str(digits_dirs.test_dir), str(events_path),
                 "--gallery", str(out), "--threads", "2", "--stats-interval", "0",
                 "--batch", "8"]) == 0
    lines = events_path.read_text().splitlines()
    events = [e for e in map(json.loads, lines) if "identity" in e]   # results only
    matches = gallery_and_scores["matches"]
    assert len(events) == len(matches) == 359
    assert [e["identity"] for e in events] == [m.identity for m in matches]
    np.testing.assert_allclose([e["similarity"] for e in events],
                               [m.similarity for m in matches], atol=1e-4)
    # review fields: the best candidate even when rejected, the threshold in force, the file
    threshold = gallery_and_scores["gallery"].suggested_threshold
    assert [e["candidate"] for e in events] == [m.best for m in matches]
    assert all(e["match_threshold"] == threshold for e in events)
    rejected = [e for e in events if e["identity"] == UNKNOWN]
    assert rejected and all(e["candidate"] in [str(d) for d in range(9)] and
                            e["similarity"] < threshold for e in rejected)
    files = sorted(p for p in Path(digits_dirs.test_dir).rglob("*.png"))
    assert [e["path"] for e in events] == [str(p) for p in files]


def test_enrolling_one_identity_is_refused_with_the_way_out(
        digits_features_onnx: Path, one_photo_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    os.symlink(one_photo_dir / "0", lone / "0")
    assert main(["gallery", "enroll", str(lone), "--model", str(digits_features_onnx),
                 "--out", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert "at least two identities" in err and "--match-threshold" in err
    assert not (tmp_path / "g.npz").exists()


def _small_enrolment(digits_dirs: Any, root: Path, damaged: bool) -> Path:
    """Identities 0-2, five train photos each (symlinks); with ``damaged``, identity 1 also
    holds a corrupt PNG and an empty JPEG sorted between its good photos."""
    for digit in "012":
        (root / digit).mkdir(parents=True)
        for photo in sorted((Path(digits_dirs.train_dir) / digit).iterdir())[:5]:
            os.symlink(photo, root / digit / photo.name)
    if damaged:
        good = sorted(p.name for p in (root / "1").iterdir())
        (root / "1" / (good[1] + "-corrupt.png")).write_bytes(b"\x89PNG\r\n\x1a\n broken")
        (root / "1" / (good[3] + "-empty.jpg")).write_bytes(b"")
    return root


def test_enrolment_skips_unreadable_photos_and_counts_them(
        digits_features_onnx: Path, digits_dirs: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A corrupt photo among good ones is skipped, counted and warned about once; the
    identities' features are those of the folder without it, and those of the photos read
    one by one and embedded in the same batches (what enrolment did before the decode layer)."""
    damaged = _small_enrolment(digits_dirs, tmp_path / "damaged", damaged=True)
    clean = _small_enrolment(digits_dirs, tmp_path / "clean", damaged=False)
    skips = SkipCounter()
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        with caplog.at_level(logging.WARNING, logger="edge_resnet.runtime.gallery"):
            feats = embed_identities(backend, group_by_identity(damaged), 2, skips)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        clean_feats = embed_identities(backend, group_by_identity(clean), 2)
        one_by_one = {name: embed_images(backend, [read_image(p) for p in paths], 2)
                      for name, paths in group_by_identity(clean).items()}
        gallery = enroll(backend, damaged, batch_size=2)
        clean_gallery = enroll(backend, clean, batch_size=2)
    assert sorted(Path(p).name.split("-")[-1] for p in skips.skipped) == ["corrupt.png",
                                                                          "empty.jpg"]
    assert all(Path(p).parent.name == "1" for p in skips.skipped)
    assert len(warnings) == 1 and "skipped 2 unreadable image(s)" in warnings[0]
    assert "-corrupt.png: not a readable image" in warnings[0]
    assert "-empty.jpg: empty file" in warnings[0]
    assert list(feats) == list(clean_feats) == ["0", "1", "2"]
    for name in feats:
        assert feats[name].shape == (5, 2048)
        np.testing.assert_array_equal(feats[name], clean_feats[name])
        np.testing.assert_array_equal(feats[name], one_by_one[name])
    assert gallery.counts == clean_gallery.counts == [5, 5, 5]
    np.testing.assert_array_equal(gallery.embeddings, clean_gallery.embeddings)
    assert gallery.suggested_threshold == clean_gallery.suggested_threshold


def test_identity_without_a_readable_photo_is_named(
        digits_features_onnx: Path, digits_dirs: Any, tmp_path: Path) -> None:
    root = _small_enrolment(digits_dirs, tmp_path / "ids", damaged=False)
    for photo in (root / "2").iterdir():
        photo.unlink()
    (root / "2" / "only.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    skips = SkipCounter()
    with load_backend("onnxruntime", digits_features_onnx, threads=2) as backend:
        with pytest.raises(DataError, match=r"identity '2' has no readable image \(.*only\.png: "
                                            r"not a readable image"):
            embed_identities(backend, group_by_identity(root), 4, skips)
    assert list(skips.skipped) == [str(root / "2" / "only.png")]
