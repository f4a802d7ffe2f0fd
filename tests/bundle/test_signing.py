"""Fleet identity: ECDSA P-256 key + self-signed code-signing certificate; detached signatures."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_resnet.bundle.errors import SignatureError
from edge_resnet.bundle.signing import (generate_identity, load_certificate, load_private_key,
                                        sign_bytes, verify_bytes)
from edge_resnet.core import InputError


def test_keygen_writes_p256_key_private_and_code_signing_cert(fleet: Tuple[Path, Path]) -> None:
    key_path, cert_path = fleet
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_private_key(key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in eku


def test_signature_round_trip_and_refusals(fleet: Tuple[Path, Path],
                                           other_fleet: Tuple[Path, Path]) -> None:
    key, cert = load_private_key(fleet[0]), load_certificate(fleet[1])
    signature = sign_bytes(key, b"manifest bytes")
    verify_bytes(cert, b"manifest bytes", signature, "m")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_bytes(cert, b"manifest bytez", signature, "m")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_bytes(load_certificate(other_fleet[1]), b"manifest bytes", signature, "m")
    with pytest.raises(SignatureError, match="does not verify|malformed"):
        verify_bytes(cert, b"manifest bytes", b"\x00garbage", "m")


def test_keygen_refuses_to_replace_a_fleet_key(fleet: Tuple[Path, Path]) -> None:
    with pytest.raises(InputError, match="strands devices"):
        generate_identity(fleet[0].parent)


def test_non_p256_keys_are_refused(tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "ed.key").write_bytes(pem)
    with pytest.raises(InputError, match="not an ECDSA P-256 key"):
        load_private_key(tmp_path / "ed.key")
    (tmp_path / "junk.crt").write_text("not a cert")
    with pytest.raises(InputError, match="not a PEM X.509"):
        load_certificate(tmp_path / "junk.crt")
