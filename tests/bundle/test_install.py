"""Install, health check, commit, rollback and pending timeout through the real CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

from tiny_model import write_tiny_model
from edge_resnet.backends import load_backend
from edge_resnet.bundle.install import active_release
from edge_resnet.bundle.health import load_golden
from edge_resnet.cli import main
from edge_resnet.preprocessing import preprocess_batch
from tamper import snapshot

Fleet = Tuple[Path, Path]


def run(capsys: pytest.CaptureFixture, *argv: Any) -> Tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _status(capsys: pytest.CaptureFixture, root: Path) -> Any:
    code, out, _ = run(capsys, "bundle", "status", "--root", root, "--json")
    assert code == 0
    return json.loads(out)


def _runs(root: Path) -> str:
    """Run the active release's model on its golden images; return its version."""
    release = active_release(root)
    golden = load_golden(release.path / release.manifest.golden)
    with load_backend("onnxruntime", release.model) as model:
        logits = model.infer(preprocess_batch(list(golden.images[:1]), model.spec)).logits
    np.testing.assert_allclose(logits, golden.expected[:1], atol=1e-4)
    return release.manifest.version


def test_cli_keygen_create_verify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "bundle", "keygen", "--out", tmp_path / "keys")
    assert code == 0 and "fleet.crt" in out
    model = write_tiny_model(tmp_path / "m.onnx")
    bundle = tmp_path / "tiny-1.0.0.bundle"
    code, out, err = run(capsys, "bundle", "create", "--name", "tiny", "--version", "1.0.0",
                         "--model", model, "--key", tmp_path / "keys/fleet.key", "--out", bundle,
                         "--device", "orin-nx-16gb")
    assert code == 0, err
    code, out, err = run(capsys, "bundle", "verify", bundle, "--cert",
                         tmp_path / "keys/fleet.crt", "--device", "orin-nx-16gb")
    assert code == 0 and "OK" in out, err
    code, _, err = run(capsys, "bundle", "verify", bundle, "--cert",
                       tmp_path / "keys/fleet.crt", "--device", "nano")
    assert code == 2 and err.count("\n") == 1 and "not for nano" in err
    code, _, err = run(capsys, "bundle", "create", "--name", "tiny", "--version", "1.0",
                       "--model", model, "--key", tmp_path / "keys/fleet.key", "--out",
                       tmp_path / "x.bundle")
    assert code == 2 and "not a semantic version" in err and not (tmp_path / "x.bundle").exists()


def test_install_commit_upgrade_rollback(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         make_bundle: Callable[..., Path], fleet: Fleet) -> None:
    root = tmp_path / "root"
    cert = fleet[1]
    code, out, err = run(capsys, "bundle", "install", make_bundle("1.0.0"), "--cert", cert,
                         "--root", root)
    assert code == 0 and "pending" in out, err
    assert _status(capsys, root)["slots"]["a"]["state"] == "pending"
    code, _, err = run(capsys, "bundle", "install", make_bundle("1.1.0"), "--cert", cert,
                       "--root", root)
    assert code == 2 and "is pending; commit or roll it back" in err
    assert run(capsys, "bundle", "commit", "--root", root)[0] == 0
    assert _runs(root) == "1.0.0"
    assert run(capsys, "bundle", "install", make_bundle("1.1.0", seed=1), "--cert", cert,
               "--root", root)[0] == 0
    status = _status(capsys, root)
    assert status["active"] == "b" and status["slots"]["b"]["state"] == "pending"
    assert _runs(root) == "1.1.0"
    code, out, _ = run(capsys, "bundle", "rollback", "--root", root, "--reason", "bad frames")
    assert code == 0 and "1.0.0" in out
    status = _status(capsys, root)
    assert status["active"] == "a" and status["slots"]["b"]["state"] == "failed"
    assert status["slots"]["b"]["reason"] == "bad frames"
    assert _runs(root) == "1.0.0"
    code, _, err = run(capsys, "bundle", "rollback", "--root", root)
    assert code == 2 and "no previous good release" in err
    code, _, err = run(capsys, "bundle", "commit", "--root", root)
    assert code == 2 and "no pending release" in err


def test_failed_health_check_exits_1_and_keeps_previous(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture,
                                                       make_bundle: Callable[..., Path],
                                                       fleet: Fleet) -> None:
    root = tmp_path / "root"
    assert run(capsys, "bundle", "install", make_bundle("1.0.0"), "--cert", fleet[1],
               "--root", root)[0] == 0
    run(capsys, "bundle", "commit", "--root", root)
    before = snapshot(root)
    slow = make_bundle("1.1.0", latency_budget_ms=1e-6)  # no device meets 1 ns
    code, _, err = run(capsys, "bundle", "install", slow, "--cert", fleet[1], "--root", root)
    assert code == 1 and err.count("\n") == 1
    assert "health check failed" in err and "median latency" in err and "1.0.0 kept" in err
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "state.json"} == \
        {k: v for k, v in before.items() if k != "state.json"}
    events = _status(capsys, root)["events"]
    assert events[-1]["event"] == "health-failed" and "median latency" in events[-1]["detail"]
    assert _runs(root) == "1.0.0"


def test_health_check_catches_wrong_logits(tmp_path: Path, make_bundle: Callable[..., Path],
                                           fleet: Fleet) -> None:
    """A model that is not the one the golden logits came from fails on the device."""
    from edge_resnet.bundle.errors import HealthCheckError
    from edge_resnet.bundle.install import InstallOptions, install
    from edge_resnet.bundle.signing import load_certificate

    ref = write_tiny_model(tmp_path / "ref.onnx", seed=0)
    bundle = make_bundle("2.0.0", seed=0, reference=ref)
    # Re-point the model payload at different weights, re-signed: signature-valid but wrong.
    from tamper import pin, rewrite

    other = write_tiny_model(tmp_path / "other.onnx", seed=7).read_bytes()

    def swap(members: List[Any]) -> List[Any]:
        members[2] = (members[2][0], other)
        return members

    def repin(raw: Any) -> None:
        pin(raw, raw["payload"][0]["path"], other)
    bad = rewrite(bundle, tmp_path / "bad.bundle", repin, resign=fleet[0], edit_members=swap)
    with pytest.raises(HealthCheckError, match="max \\|logit error\\|"):
        install(bad, load_certificate(fleet[1]), tmp_path / "root", InstallOptions())
    assert not (tmp_path / "root" / "current").exists()


def test_pending_release_rolls_back_after_timeout(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  make_bundle: Callable[..., Path],
                                                  fleet: Fleet) -> None:
    root = tmp_path / "root"
    run(capsys, "bundle", "install", make_bundle("1.0.0"), "--cert", fleet[1], "--root", root)
    run(capsys, "bundle", "commit", "--root", root)
    assert run(capsys, "bundle", "install", make_bundle("1.1.0"), "--cert", fleet[1], "--root",
               root, "--pending-timeout", "0.5")[0] == 0
    assert _status(capsys, root)["active"] == "b"
    time.sleep(0.6)
    status = _status(capsys, root)
    assert status["active"] == "a"
    assert status["slots"]["b"]["state"] == "failed"
    assert "not committed within 0.5 s" in status["slots"]["b"]["reason"]
    code, _, err = run(capsys, "bundle", "commit", "--root", root)
    assert code == 2 and "not committed within" in err
    assert _runs(root) == "1.0.0"
    assert os.readlink(root / "current") == "slots/a"


def test_unusable_root_is_a_one_line_refusal(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             make_bundle: Callable[..., Path],
                                             fleet: Fleet) -> None:
    (tmp_path / "file").write_text("not a folder")
    code, _, err = run(capsys, "bundle", "install", make_bundle("1.0.0"), "--cert", fleet[1],
                       "--root", tmp_path / "file" / "root")
    assert code == 2 and err.count("\n") == 1 and "cannot use slot root" in err
    code, _, err = run(capsys, "bundle", "status", "--root", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err


def test_signed_but_unloadable_model_fails_the_health_check(
        tmp_path: Path, capsys: pytest.CaptureFixture, make_bundle: Callable[..., Path],
        fleet: Fleet) -> None:
    from tamper import pin, rewrite

    garbage = b"this is not an onnx model" * 40

    def swap(members: List[Any]) -> List[Any]:
        members[2] = (members[2][0], garbage)
        return members

    def repin(raw: Any) -> None:
        pin(raw, raw["payload"][0]["path"], garbage)
    bad = rewrite(make_bundle("1.0.0"), tmp_path / "bad.bundle", repin, resign=fleet[0],
                  edit_members=swap)
    code, _, err = run(capsys, "bundle", "install", bad, "--cert", fleet[1], "--root",
                       tmp_path / "root")
    assert code == 1 and err.count("\n") == 1 and "cannot run models/" in err
    assert not (tmp_path / "root" / "current").exists()
    assert not (tmp_path / "root" / ".staging").exists()


def test_engines_and_gallery_ride_along_and_compressed_bundles_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture, make_bundle: Callable[..., Path],
        fleet: Fleet) -> None:
    import gzip
    import shutil

    engine = tmp_path / "tiny.engine"
    engine.write_bytes(os.urandom(3000))
    gallery = tmp_path / "g.npz"
    np.savez(gallery, names=np.array(["a"]))
    bundle = make_bundle("1.0.0", engines=[("orin-nx-16gb.trt10.3.int8", engine)],
                         gallery=gallery)
    packed = tmp_path / "tiny.bundle.gz"
    with open(bundle, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    code, out, err = run(capsys, "bundle", "install", packed, "--cert", fleet[1], "--root",
                         tmp_path / "root")
    assert code == 0, err
    release = active_release(tmp_path / "root")
    item = release.manifest.by_role("engine")[0]
    assert (item.engine_key, item.precision) == ("orin-nx-16gb.trt10.3.int8", "int8")
    assert (release.path / item.path).read_bytes() == engine.read_bytes()
    assert (release.path / "gallery" / "g.npz").read_bytes() == gallery.read_bytes()
    code, out, _ = run(capsys, "bundle", "status", "--root", tmp_path / "root")
    assert code == 0 and "* a: tiny 1.0.0 pending" in out and "b: empty" in out


def test_engine_key_must_name_its_precision(tmp_path: Path, make_bundle: Callable[..., Path]
                                            ) -> None:
    from edge_resnet.core import InputError

    engine = tmp_path / "x.engine"
    engine.write_bytes(b"x")
    with pytest.raises(InputError, match="must name exactly one precision"):
        make_bundle("1.0.0", engines=[("orin-nx-16gb.trt10.3", engine)])


def test_golden_images_from_a_folder(tmp_path: Path, fleet: Fleet) -> None:
    from PIL import Image

    from edge_resnet.bundle.create import BundleSpec, create_bundle

    folder = tmp_path / "heldout" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8) for i in range(3)]
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"{i}.png")
    model = write_tiny_model(tmp_path / "m.onnx")
    create_bundle(BundleSpec(name="tiny", version="1.0.0", models=[model], key=fleet[0],
                             out=tmp_path / "b.bundle", golden_images=tmp_path / "heldout",
                             golden_count=2))
    from edge_resnet.bundle.install import InstallOptions, install
    from edge_resnet.bundle.signing import load_certificate

    release = install(tmp_path / "b.bundle", load_certificate(fleet[1]), tmp_path / "root",
                      InstallOptions())
    golden = load_golden(release.path / release.manifest.golden)
    assert len(golden.images) == 2 and golden.expected.shape == (2, 3)
    stored = {img.tobytes() for img in golden.images}
    assert stored <= {img.tobytes() for img in pixels}


def test_engine_from_the_engine_cache_carries_its_sidecar_key(
        tmp_path: Path, capsys: pytest.CaptureFixture, fleet: Fleet) -> None:
    from edge_resnet.engine.cache import SIDECAR_FORMAT
    from edge_resnet.fingerprints import sha256_json

    engine = tmp_path / "tiny.orin-nx-16gb.trt10.3.fp16.GPU.b1-1-1.abc.engine"
    engine.write_bytes(os.urandom(2000))
    key = {"model_sha256": "0" * 64, "device": "orin-nx-16gb", "tensorrt": "10.3",
           "precision": "fp16", "compute_capability": "8.7"}
    (tmp_path / (engine.name + ".json")).write_text(json.dumps(
        {"format": SIDECAR_FORMAT, "key": key, "plan": {}}))
    model = write_tiny_model(tmp_path / "m.onnx")
    code, _, err = run(capsys, "bundle", "create", "--name", "tiny", "--version", "1.0.0",
                       "--model", model, "--engine", engine, "--key", fleet[0], "--out",
                       tmp_path / "b.bundle")
    assert code == 0, err
    code, _, err = run(capsys, "bundle", "install", tmp_path / "b.bundle", "--cert", fleet[1],
                       "--root", tmp_path / "root")
    assert code == 0, err
    engines = active_release(tmp_path / "root").manifest.by_role("engine")
    assert [e.path for e in engines] == [f"engines/{engine.name}", f"engines/{engine.name}.json"]
    assert {(e.engine_key, e.precision) for e in engines} == {(sha256_json(key), "fp16")}
    (tmp_path / "bare.engine").write_bytes(b"x")
    code, _, err = run(capsys, "bundle", "create", "--name", "tiny", "--version", "1.0.1",
                       "--model", model, "--engine", tmp_path / "bare.engine", "--key",
                       fleet[0], "--out", tmp_path / "c.bundle")
    assert code == 2 and "has no sidecar" in err
