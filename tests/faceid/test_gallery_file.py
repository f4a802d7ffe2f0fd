"""Gallery files that cannot be tampered with: one test per attack in issue 12.

Unit level on small galleries of random unit vectors (fast), and through the CLI on a gallery
enrolled with the digits model: every refusal is one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest

from edge_resnet.bundle.signing import generate_identity
from edge_resnet.cli import main
from edge_resnet.core import EdgeResnetError
from edge_resnet.faceid import galleryfile as gf
from edge_resnet.runtime.gallery import Gallery

FINGERPRINT = "0123456789abcdef"


def _unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _gallery(names: Any = ("ana", "bo", "chen"), seed: int = 0) -> Gallery:
    return Gallery(names=list(names), embeddings=_unit(len(names), seed=seed),
                   fingerprint=FINGERPRINT, counts=[1] * len(names), suggested_threshold=0.5,
                   threshold_info={"target_far": 0.01})


def _fields(path: Path) -> Dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _tamper(src: Path, dst: Path, rehash: bool, **changes: Any) -> Path:
    """Rewrite ``src`` with ``changes``; ``rehash`` recomputes the content hash as a forger
    who read this code would, so only the field checks (or a signature) can catch it."""
    fields = _fields(src)
    fields.update(changes)
    if rehash:
        fields["content_sha256"] = np.array(gf.content_digest(
            [str(n) for n in fields["names"]], fields["embeddings"],
            [int(c) for c in fields["counts"]], str(fields["fingerprint"]),
            float(fields["threshold"]), json.loads(str(fields["threshold_info"]))))
    with open(dst, "wb") as fh:
        np.savez(fh, **fields)
    return dst


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return _gallery().save(tmp_path / "g.npz")


def _with_nan(vectors: np.ndarray) -> np.ndarray:
    out = vectors.copy()
    out[0, 3] = np.nan
    return out


ATTACKS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "x10 scaled vectors": lambda f: {"embeddings": f["embeddings"] * 10},
    "NaN vector": lambda f: {"embeddings": _with_nan(f["embeddings"])},
    "names/vectors count mismatch": lambda f: {"names": f["names"][:2], "counts": f["counts"][:2]},
    "duplicate names": lambda f: {"names": np.array(["ana", "ana", "chen"])},
    "non-NFC name": lambda f: {"names": np.array([unicodedata.normalize("NFD", "José"), "bo",
                                                  "chen"])},
    "reserved name": lambda f: {"names": np.array(["unknown", "bo", "chen"])},
    "threshold out of range": lambda f: {"threshold": np.array(1.5)},
    "float64 vectors": lambda f: {"embeddings": f["embeddings"].astype(np.float64)},
    "1-D vectors": lambda f: {"embeddings": f["embeddings"].ravel()},
    "zero counts": lambda f: {"counts": np.zeros(3, np.int64)},
}
ATTACK_MESSAGES = {
    "x10 scaled vectors": "not unit vectors", "NaN vector": "NaN",
    "names/vectors count mismatch": "one vector per name", "duplicate names": "duplicate",
    "non-NFC name": "not NFC", "reserved name": "reserved",
    "threshold out of range": r"\[-1, 1\]", "float64 vectors": "float32",
    "1-D vectors": "2-D", "zero counts": "count",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_is_refused_even_with_a_recomputed_hash(saved: Path, tmp_path: Path,
                                                            attack: str) -> None:
    bad = _tamper(saved, tmp_path / "bad.npz", True, **ATTACKS[attack](_fields(saved)))
    with pytest.raises(gf.GalleryFileError, match=ATTACK_MESSAGES[attack]):
        Gallery.load(bad)


def test_copied_fingerprint_on_altered_vectors_breaks_the_hash(saved: Path,
                                                               tmp_path: Path) -> None:
    """Valid unit vectors of another enrolment under this gallery's fingerprint."""
    other = _gallery(seed=7)
    bad = _tamper(saved, tmp_path / "bad.npz", False, embeddings=other.embeddings)
    with pytest.raises(gf.GalleryFileError, match="content hash mismatch"):
        Gallery.load(bad)
    for change in ({"threshold": np.array(0.1)}, {"fingerprint": np.array("f" * 16)},
                   {"names": np.array(["ana", "chen", "bo"])}):
        with pytest.raises(gf.GalleryFileError, match="content hash mismatch"):
            Gallery.load(_tamper(saved, tmp_path / "bad2.npz", False, **change))


def test_signature_stops_a_forger_who_recomputes_the_hash(tmp_path: Path) -> None:
    key, cert = generate_identity(tmp_path / "fleet")
    other_key, other_cert = generate_identity(tmp_path / "other")
    signed = _gallery().save(tmp_path / "signed.npz", sign_key=key)
    loaded = Gallery.load(signed, certificate=cert)
    assert loaded.signature and loaded.names == ["ana", "bo", "chen"]
    forged = _tamper(signed, tmp_path / "forged.npz", True,
                     embeddings=_gallery(seed=9).embeddings)
    Gallery.load(forged)                                  # the hash alone cannot tell
    with pytest.raises(EdgeResnetError, match="signature does not verify"):
        Gallery.load(forged, certificate=cert)
    with pytest.raises(EdgeResnetError, match="signature does not verify"):
        Gallery.load(signed, certificate=other_cert)
    unsigned = _gallery().save(tmp_path / "unsigned.npz")
    with pytest.raises(gf.GalleryFileError, match="not signed"):
        Gallery.load(unsigned, certificate=cert)
    resigned = _gallery(seed=9).save(tmp_path / "resigned.npz", sign_key=other_key)
    with pytest.raises(EdgeResnetError, match="signature does not verify"):
        Gallery.load(resigned, certificate=cert)


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_truncated_and_foreign_files_are_one_error(saved: Path, tmp_path: Path,
                                                   cut: float) -> None:
    data = saved.read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(gf.GalleryFileError, match="corrupt or truncated"):
        Gallery.load(bad)


def test_old_format_and_missing_fields(saved: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.npz"
    np.savez(old, names=np.array(["a"]), embeddings=_unit(1))     # the format before issue 12
    with pytest.raises(gf.GalleryFileError, match="not an edge-resnet-gallery/2 file"):
        Gallery.load(old)
    fields = _fields(saved)
    del fields["counts"]
    partial = tmp_path / "partial.npz"
    np.savez(partial, **fields)
    with pytest.raises(gf.GalleryFileError, match=r"\['counts'\] are missing"):
        Gallery.load(partial)


def test_in_memory_galleries_are_validated_too() -> None:
    with pytest.raises(gf.GalleryFileError, match="not unit vectors"):
        Gallery(names=["a"], embeddings=np.ones((1, 4), np.float32), fingerprint=FINGERPRINT,
                counts=[1])
    with pytest.raises(gf.GalleryFileError, match="one vector per name"):
        Gallery(names=["a", "b"], embeddings=_unit(1), fingerprint=FINGERPRINT, counts=[1, 1])


@pytest.fixture(scope="module")
def enrolled(digits_features_onnx: Path, digits_dirs: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A real gallery (digits 0-8, 3 photos each) signed with a fleet key."""
    import os

    root = tmp_path_factory.mktemp("enrol3")
    for sub in sorted(Path(digits_dirs.train_dir).iterdir()):
        if sub.is_dir() and sub.name != "9":
            (root / sub.name).mkdir()
            for img in sorted(sub.iterdir())[:3]:
                os.symlink(img, root / sub.name / img.name)
    key, cert = generate_identity(tmp_path_factory.mktemp("fleet"))
    out = tmp_path_factory.mktemp("g") / "digits.npz"
    assert main(["gallery", "enroll", str(root), "--model", str(digits_features_onnx),
                 "--out", str(out), "--sign-key", str(key), "--threads", "2"]) == 0
    return {"gallery": out, "cert": cert, "key": key}


def _one_error_line(capsys: pytest.CaptureFixture, match: str) -> None:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and match in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("attack", ["x10 scaled vectors", "NaN vector",
                                    "names/vectors count mismatch"])
def test_cli_run_refuses_tampered_galleries_with_exit_2(
        enrolled: Dict[str, Path], digits_features_onnx: Path, digits_dirs: Any,
        tmp_path: Path, capsys: pytest.CaptureFixture, attack: str) -> None:
    src = enrolled["gallery"]
    bad = _tamper(src, tmp_path / "bad.npz", True, **ATTACKS[attack](_fields(src)))
    capsys.readouterr()
    code = main(["run", str(digits_features_onnx), str(digits_dirs.test_dir), "-",
                 "--gallery", str(bad), "--max-frames", "1", "--stats-interval", "0"])
    assert code == 2
    _one_error_line(capsys, ATTACK_MESSAGES[attack].replace("\\", ""))


def test_cli_verify_catches_copied_fingerprint_truncation_and_forgery(
        enrolled: Dict[str, Path], digits_features_onnx: Path, digits_onnx: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, cert = enrolled["gallery"], enrolled["cert"]
    capsys.readouterr()
    assert main(["gallery", "verify", str(src), "--cert", str(cert),
                 "--model", str(digits_features_onnx)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["signed"] and shown["signature_checked"] and shown["identities"] == 9
    rotated = np.roll(_fields(src)["embeddings"], 1, axis=0)      # valid vectors, wrong people
    copied = _tamper(src, tmp_path / "copied.npz", False, embeddings=rotated)
    assert main(["gallery", "verify", str(copied)]) == 2
    _one_error_line(capsys, "content hash mismatch")
    forged = _tamper(src, tmp_path / "forged.npz", True, embeddings=rotated)
    assert main(["gallery", "verify", str(forged), "--cert", str(cert)]) == 2
    _one_error_line(capsys, "signature does not verify")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(src.read_bytes()[:500])
    assert main(["gallery", "verify", str(cut)]) == 2
    _one_error_line(capsys, "corrupt or truncated")
    other_model = main(["gallery", "verify", str(src), "--model", str(digits_onnx)])
    assert other_model == 0       # same weights without the features output: same fingerprint


def test_enrolment_refuses_names_that_are_one_name_in_another_unicode_form(tmp_path: Path
                                                                         ) -> None:
    from edge_resnet.core import DataError
    from edge_resnet.runtime.gallery import group_by_identity

    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    for name in (composed, decomposed, "ana"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.png").write_bytes(b"")
    with pytest.raises(DataError, match="different Unicode forms; merge them"):
        group_by_identity(tmp_path)
    (tmp_path / decomposed / "1.png").unlink()
    (tmp_path / decomposed).rmdir()
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "1.png").write_bytes(b"")
    with pytest.raises(gf.GalleryFileError, match="reserved"):
        group_by_identity(tmp_path)
