"""Every bad input of issue 10: refused with one line, and nothing under the root changes.

Each case is a real attack or failure on a real bundle: re-signed or unsigned manifests, flipped
payload bytes, cut files, tar entries that escape or link, a signed decompression bomb, an unknown
schema, another device, a downgrade and a full disk (ENOSPC raised at the staging write layer).
"""

from __future__ import annotations

import errno
import gzip
import shutil
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from edge_resnet.bundle import fsops
from edge_resnet.bundle.archive import Limits
from edge_resnet.bundle.errors import BundleError, SignatureError
from edge_resnet.bundle.install import InstallOptions, commit, install, verify
from edge_resnet.bundle.signing import load_certificate
from tamper import Member, pin, regular, rewrite, snapshot

Fleet = Tuple[Path, Path]


@pytest.fixture()
def installed_root(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet) -> Path:
    """A root running tiny 1.0.0 (committed)."""
    root = tmp_path / "root"
    install(make_bundle("1.0.0"), load_certificate(fleet[1]), root, InstallOptions())
    commit(root)
    return root


def _refused(bundle: Path, fleet: Fleet, root: Path, match: str,
             options: InstallOptions = InstallOptions(), error: type = BundleError) -> None:
    """verify and install both refuse with ``match``; the root and its neighbours are unchanged."""
    cert = load_certificate(fleet[1])
    before = snapshot(root.parent)
    with pytest.raises(error, match=match) as info:
        verify(bundle, cert, options, root)
    assert "\n" not in str(info.value)
    with pytest.raises(error, match=match):
        install(bundle, cert, root, options)
    assert snapshot(root.parent) == before


def _swap_model_byte(members: List[Member]) -> List[Member]:
    info, data = members[2]
    members[2] = (info, data[:-1] + bytes([data[-1] ^ 1]))
    return members


def test_wrong_key(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                   other_fleet: Fleet, installed_root: Path) -> None:
    bundle = make_bundle("1.1.0", key=other_fleet[0])
    _refused(bundle, fleet, installed_root, "signature does not verify", error=SignatureError)


def test_tampered_manifest(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                           installed_root: Path) -> None:
    def bump(raw: Dict[str, Any]) -> None:
        raw["health"]["latency_budget_ms"] = 1e9
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", bump)
    _refused(bundle, fleet, installed_root, "signature does not verify")


def test_tampered_payload(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                          installed_root: Path) -> None:
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", edit_members=_swap_model_byte)
    _refused(bundle, fleet, installed_root, "does not match its signed sha256")


@pytest.mark.parametrize("cut", ["header", "half", "last-byte"])
def test_truncated_bundle(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                          installed_root: Path, cut: str) -> None:
    source = make_bundle("1.1.0")
    with tarfile.open(source) as tar:
        last = tar.getmembers()[-1]
    data = source.read_bytes()
    end = {"header": 100, "half": len(data) // 2, "last-byte": last.offset_data + last.size - 1}
    bundle = tmp_path / "cut.bundle"
    bundle.write_bytes(data[:end[cut]])
    _refused(bundle, fleet, installed_root, "truncated|not a readable bundle")


@pytest.mark.parametrize("name,kind,match", [
    ("../../evil.onnx", tarfile.REGTYPE, "unsafe entry"),
    ("payload/../../evil.onnx", tarfile.REGTYPE, "unsafe entry"),
    ("/tmp/evil.onnx", tarfile.REGTYPE, "unsafe entry"),
    ("payload/models/evil", tarfile.SYMTYPE, "is a symlink"),
    ("payload/models/evil", tarfile.LNKTYPE, "is a hard link"),
    ("payload/models/evil", tarfile.CHRTYPE, "is a device"),
    ("payload/models/extra.onnx", tarfile.REGTYPE, "not in the signed manifest"),
])
@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "by-hand-only"])
def test_hostile_tar_entries(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                             installed_root: Path, name: str, kind: bytes, match: str,
                             data_filter: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not data_filter:  # as on a Python without tarfile's data filter (3.8 before 3.8.17)
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    def inject(members: List[Member]) -> List[Member]:
        info, _ = regular(name, b"x" * 10)
        info.type = kind
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info.linkname = "/etc/passwd"
        return members[:2] + [(info, b"x" * 10 if kind == tarfile.REGTYPE else b"")] + members[2:]
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", edit_members=inject)
    _refused(bundle, fleet, installed_root, match)


def test_signed_decompression_bomb(tmp_path: Path, make_bundle: Callable[..., Path],
                                   fleet: Fleet, installed_root: Path) -> None:
    zeros = tmp_path / "zeros.npz"
    with open(zeros, "wb") as fh:
        fh.truncate(64 << 20)
    plain = make_bundle("1.1.0", gallery=zeros)
    bomb = tmp_path / "bomb.bundle"
    with open(plain, "rb") as src, gzip.open(bomb, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    assert bomb.stat().st_size < (1 << 20)  # 64 MiB of signed zeros in well under 1 MiB
    _refused(bomb, fleet, installed_root, "decompression bomb")
    options = InstallOptions(limits=Limits(max_total_bytes=32 << 20))
    _refused(plain, fleet, installed_root, "exceeds the limit", options)


def test_oversized_manifest_entry_is_refused_unread(tmp_path: Path, make_bundle: Callable[..., Path],
                                                    fleet: Fleet, installed_root: Path) -> None:
    def huge(members: List[Member]) -> List[Member]:
        return [regular("manifest.json", b" " * (2 << 20))] + members[1:]
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", edit_members=huge)
    _refused(bundle, fleet, installed_root, "at most 1048576 bytes")


def test_unknown_manifest_version(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                                  installed_root: Path) -> None:
    def future(raw: Dict[str, Any]) -> None:
        raw["schema_version"] = 2
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", future, resign=fleet[0])
    _refused(bundle, fleet, installed_root, "schema version 2 is not supported")


def test_signed_manifest_cannot_name_escaping_paths(tmp_path: Path,
                                                    make_bundle: Callable[..., Path],
                                                    fleet: Fleet, installed_root: Path) -> None:
    def escape(raw: Dict[str, Any]) -> None:
        raw["payload"][0]["path"] = "models/../../../etc/cron.d/x"
    bundle = rewrite(make_bundle("1.1.0"), tmp_path / "t.bundle", escape, resign=fleet[0])
    _refused(bundle, fleet, installed_root, "not a plain relative path")


def test_bundle_for_another_device(tmp_path: Path, make_bundle: Callable[..., Path],
                                   fleet: Fleet, installed_root: Path) -> None:
    bundle = make_bundle("1.1.0", devices=["orin-nx-16gb"])
    _refused(bundle, fleet, installed_root, "not for nano", InstallOptions(device="nano"))
    _refused(bundle, fleet, installed_root, "say which device", InstallOptions())
    verify(bundle, load_certificate(fleet[1]), InstallOptions(device="orin-nx-16gb"))


def test_downgrade_and_reinstall(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                                 installed_root: Path) -> None:
    _refused(make_bundle("0.9.0"), fleet, installed_root, "older than the installed 1.0.0")
    _refused(make_bundle("1.0.0-rc.1"), fleet, installed_root, "older than the installed")
    _refused(make_bundle("1.0.0", seed=3), fleet, installed_root, "already installed")
    release = install(make_bundle("0.9.0"), load_certificate(fleet[1]), installed_root,
                      InstallOptions(allow_downgrade=True))
    assert release.manifest.version == "0.9.0"


def test_full_disk_while_staging(tmp_path: Path, make_bundle: Callable[..., Path], fleet: Fleet,
                                 installed_root: Path) -> None:
    bundle = make_bundle("1.1.0")
    before = snapshot(installed_root.parent)

    def enospc(step: str) -> None:
        if step.startswith("write golden.npz"):
            raise OSError(errno.ENOSPC, "No space left on device")
    fsops.set_step_hook(enospc)
    try:
        with pytest.raises(BundleError, match="No space left on device.*nothing was changed"):
            install(bundle, load_certificate(fleet[1]), installed_root, InstallOptions())
    finally:
        fsops.set_step_hook(None)
    assert snapshot(installed_root.parent) == before


def test_real_full_disk_on_a_small_tmpfs(tmp_path: Path, make_bundle: Callable[..., Path],
                                         fleet: Fleet) -> None:
    """The same refusal with a real ENOSPC: a 200 KiB tmpfs in a private mount namespace."""
    import os
    import subprocess
    import sys

    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (unshare -m); the simulated-ENOSPC "
                    "test above covers the same code path")
    first, second = make_bundle("1.0.0", golden_count=2), make_bundle("1.1.0", seed=1,
                                                                     golden_count=2)
    assert second.stat().st_size > 80_000  # more than what is left after the first install
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    er = f"{sys.executable} -m edge_resnet.cli bundle"
    listing = f"find {mnt} -printf '%p %y %s %l\\n' | sort; cat {mnt}/root/state.json"
    script = (f"mount -t tmpfs -o size=200k tmpfs {mnt} && "
              f"{er} install {first} --cert {fleet[1]} --root {mnt}/root >/dev/null && "
              f"{er} commit --root {mnt}/root >/dev/null && "
              f"({listing}) > {tmp_path}/before && "
              f"{er} install {second} --cert {fleet[1]} --root {mnt}/root 2> {tmp_path}/err; "
              f"echo $? > {tmp_path}/rc; ({listing}) > {tmp_path}/after")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rc").read_text().strip() == "2"
    err = (tmp_path / "err").read_text()
    assert err.count("\n") == 1 and "No space left on device" in err
    assert "nothing was changed" in err
    assert (tmp_path / "after").read_text() == (tmp_path / "before").read_text()
