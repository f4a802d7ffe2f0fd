"""The fleet signing identity: an ECDSA P-256 key and a self-signed X.509 certificate.

One identity serves every format: our detached manifest signature (ECDSA-SHA256, DER), Mender
artifacts (mender-artifact 3.9 refuses Ed25519 but takes ECDSA P-256 PEM keys), SWUpdate's and
RAUC's CMS signatures (both verify the signer against an X.509 certificate). The certificate's
extended key usage names ``codeSigning`` and ``emailProtection``: SWUpdate 2022.12 checks the CMS
signer with its code-signing purpose and with OpenSSL's ``smime_sign`` purpose, and OpenSSL
refuses a purpose whose usage the EKU leaves out.

Only the ``cryptography`` package does cryptography here. Device side: Python 3.8; the package is
imported inside the functions so ``import edge_resnet`` stays light.
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path
from typing import Any, Tuple

from edge_resnet.bundle.errors import BundleError, SignatureError
from edge_resnet.core import DependencyError, InputError
from edge_resnet.io_utils import atomic_path, atomic_write_bytes

__all__ = ["KEY_NAME", "CERT_NAME", "generate_identity", "load_certificate", "load_private_key",
           "sign_bytes", "verify_bytes"]

KEY_NAME = "fleet.key"
CERT_NAME = "fleet.crt"


def _crypto() -> Any:
    """Import cryptography (once) and return its ``ec`` module.

    On Python 3.8 (JetPack 5) cryptography warns at import that it deprecates 3.8; that warning
    would turn every one-line CLI message into three lines on exactly the devices this runs on,
    so it is silenced here (it says nothing the user can act on: JetPack 5 ships 3.8).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Python 3\\.8 is no longer supported")
        try:
            import cryptography.hazmat.primitives.asymmetric.ec as ec
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise DependencyError(
                "the cryptography package is missing; `pip install 'cryptography>=3.2'`") from exc
    return ec


def generate_identity(out_dir: "str | Path", common_name: str = "edge-resnet fleet",
                      days: int = 3650, overwrite: bool = False) -> Tuple[Path, Path]:
    """Write ``out_dir/fleet.key`` (SEC1 PEM, mode 0600) and ``out_dir/fleet.crt``.

    Refuses to overwrite an existing key: replacing a fleet key strands every device that
    trusts the old certificate, so it must be a deliberate act (``overwrite=True``).
    """
    ec = _crypto()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise InputError(f"certificate validity must be at least 1 day, got {days}")
    out = Path(out_dir)
    key_path, cert_path = out / KEY_NAME, out / CERT_NAME
    if not overwrite and (key_path.exists() or cert_path.exists()):
        raise InputError(f"{key_path} or {cert_path} already exists; a new fleet key strands "
                         "devices that trust the old certificate (overwrite it on purpose: set overwrite)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING,
                                                  ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    # SEC1 ("EC PRIVATE KEY"): mender-artifact 3.9 parses ECDSA keys only in this form
    # ("use ParsePKCS8PrivateKey instead" otherwise); openssl, SWUpdate and RAUC read it too.
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    with atomic_path(key_path) as tmp:
        fd = os.open(str(tmp), os.O_WRONLY | os.O_TRUNC)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem_key)
        finally:
            os.close(fd)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def load_private_key(path: "str | Path") -> Any:
    """Load the fleet's PEM private key; only ECDSA P-256 is accepted (see module doc)."""
    ec = _crypto()
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise InputError(f"{path} is not an ECDSA P-256 key; create one with "
                         "`edge-resnet bundle keygen`")
    return key


def load_certificate(path: "str | Path") -> Any:
    """Load a PEM X.509 certificate holding an ECDSA P-256 public key."""
    ec = _crypto()
    from cryptography import x509

    data = _read(path, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InputError(f"{path} is not a PEM X.509 certificate: {exc}") from exc
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        raise InputError(f"{path} does not hold an ECDSA public key")
    return cert


def sign_bytes(key: Any, data: bytes) -> bytes:
    """Detached ECDSA-SHA256 signature (DER) over ``data``."""
    ec = _crypto()
    from cryptography.hazmat.primitives import hashes

    return bytes(key.sign(data, ec.ECDSA(hashes.SHA256())))


def verify_bytes(cert: Any, data: bytes, signature: bytes, what: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the certificate key's over ``data``."""
    ec = _crypto()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes

    try:
        cert.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(
            f"{what}: the signature does not verify with the given certificate (signed with "
            "another key, or the manifest was changed); refusing it") from None
    except ValueError as exc:  # malformed DER
        raise SignatureError(f"{what}: the signature is malformed ({exc}); refusing it") from None


def _read(path: "str | Path", what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror}") from None
