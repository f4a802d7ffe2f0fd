"""The bundle manifest: a versioned JSON schema that pins every payload by size and sha256.

The manifest is the only thing signed, so everything the device trusts is in it: which files
exist (path, size, sha256, role, precision), which devices the release targets, the minimum SDK,
the provenance of each model, and the health check (golden inputs, the FP32 reference logits,
tolerance per precision, latency budget). :func:`parse_manifest` refuses anything it does not
understand — an unknown schema version, an unknown key, a path that could leave the slot —
with a message naming the field. Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from edge_resnet.bundle.errors import BundleError

__all__ = ["MAX_MANIFEST_BYTES", "SCHEMA", "SCHEMA_VERSION", "ROLES", "PRECISIONS", "Manifest",
           "Payload", "Tolerance", "parse_manifest", "parse_version", "version_key"]

SCHEMA = "edge-resnet-bundle"
SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
# role -> the folder its payloads live in (so a role can never name another role's file).
ROLES: Dict[str, str] = {"model": "models", "engine": "engines", "gallery": "gallery",
                         "golden": "golden"}
PRECISIONS = ("fp32", "fp16", "int8")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = {"schema", "schema_version", "name", "version", "created", "devices",
             "min_sdk_version", "payload", "provenance", "health"}
_PAYLOAD_KEYS = {"path", "size", "sha256", "role", "precision", "engine_key"}
_HEALTH_KEYS = {"golden", "tolerance", "latency_budget_ms"}


def parse_version(text: str) -> Tuple[int, int, int, Optional[str]]:
    """Split a semantic version; :class:`BundleError` when it is not one."""
    match = _SEMVER.match(text) if isinstance(text, str) else None
    if match is None:
        raise BundleError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])")
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)


def version_key(text: str) -> Tuple[Any, ...]:
    """Sort key with semver precedence: a pre-release sorts before its release; build ignored."""
    major, minor, patch, pre = parse_version(text)
    if pre is None:
        return (major, minor, patch, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, parts)


@dataclass(frozen=True)
class Payload:
    """One file of the bundle, pinned by the signed manifest."""

    path: str
    size: int
    sha256: str
    role: str
    precision: Optional[str] = None
    engine_key: Optional[str] = None

    @property
    def member(self) -> str:
        """Its name inside the bundle archive."""
        return "payload/" + self.path

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256,
                               "role": self.role}
        if self.precision is not None:
            out["precision"] = self.precision
        if self.engine_key is not None:
            out["engine_key"] = self.engine_key
        return out


@dataclass(frozen=True)
class Tolerance:
    """How far a device's logits may be from the FP32 reference for one precision."""

    max_abs: float
    min_top1_agreement: float

    def to_json(self) -> Dict[str, float]:
        return {"max_abs": self.max_abs, "min_top1_agreement": self.min_top1_agreement}


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest (``raw`` keeps the exact JSON that was signed)."""

    name: str
    version: str
    created: str
    devices: Tuple[str, ...]
    min_sdk_version: str
    payload: Tuple[Payload, ...]
    provenance: Dict[str, Any]
    golden: str
    tolerance: Dict[str, Tolerance]
    latency_budget_ms: float
    raw: Dict[str, Any]
    data: bytes = b""  # the exact signed bytes
    signature: bytes = b""

    def by_role(self, role: str) -> List[Payload]:
        return [p for p in self.payload if p.role == role]

    def entry(self, path: str) -> Payload:
        for item in self.payload:
            if item.path == path:
                return item
        raise BundleError(f"manifest has no payload {path!r}")

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.payload)


def _need(data: Mapping[str, Any], key: str, kind: Any, where: str) -> Any:
    if key not in data:
        raise BundleError(f"manifest: {where} has no {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BundleError(f"manifest: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set, where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BundleError(f"manifest: unknown field(s) in {where}: {', '.join(unknown)} "
                          "(made by a newer SDK? upgrade edge-resnet on the device)")


def check_payload_path(path: str, role: str) -> None:
    """A relative POSIX path of plain parts under its role's folder; nothing that can escape."""
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or len(parts) < 2
            or not all(_PART.match(p) and p not in (".", "..") for p in parts)):
        raise BundleError(f"manifest: payload path {path!r} is not a plain relative path")
    if parts[0] != ROLES[role]:
        raise BundleError(f"manifest: {role} payload {path!r} must live under {ROLES[role]}/")


def _parse_payload(item: Any, index: int) -> Payload:
    where = f"payload[{index}]"
    if not isinstance(item, dict):
        raise BundleError(f"manifest: {where} is not an object")
    _check_keys(item, _PAYLOAD_KEYS, where)
    role = _need(item, "role", str, where)
    if role not in ROLES:
        raise BundleError(f"manifest: {where}.role {role!r} is not one of {sorted(ROLES)}")
    path = _need(item, "path", str, where)
    check_payload_path(path, role)
    size = _need(item, "size", int, where)
    sha = _need(item, "sha256", str, where)
    if size < 0 or not _SHA256.match(sha):
        raise BundleError(f"manifest: {where} has a negative size or a malformed sha256")
    precision = item.get("precision")
    if role in ("model", "engine") and precision not in PRECISIONS:
        raise BundleError(f"manifest: {where}.precision must be one of {PRECISIONS}")
    engine_key = item.get("engine_key")
    if role == "engine" and not isinstance(engine_key, str):
        raise BundleError(f"manifest: {where} is an engine without an engine_key")
    return Payload(path, size, sha, role, precision, engine_key)


def _parse_tolerance(data: Any) -> Dict[str, Tolerance]:
    if not isinstance(data, dict) or not data:
        raise BundleError("manifest: health.tolerance must be a non-empty object")
    out: Dict[str, Tolerance] = {}
    for precision, tol in data.items():
        where = f"health.tolerance.{precision}"
        if precision not in PRECISIONS or not isinstance(tol, dict):
            raise BundleError(f"manifest: {where} is not a precision with an object")
        _check_keys(tol, {"max_abs", "min_top1_agreement"}, where)
        max_abs = float(_need(tol, "max_abs", (int, float), where))
        agree = float(_need(tol, "min_top1_agreement", (int, float), where))
        if not (max_abs >= 0 and 0.0 <= agree <= 1.0):
            raise BundleError(f"manifest: {where} needs max_abs >= 0 and agreement in [0, 1]")
        out[precision] = Tolerance(max_abs, agree)
    return out


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate the signed manifest bytes (call after the signature verified)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"manifest is {len(data)} bytes (limit {MAX_MANIFEST_BYTES})")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise BundleError(f"not an edge-resnet bundle manifest (schema is not {SCHEMA!r})")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"manifest schema version {raw.get('schema_version')!r} is not "
                          f"supported (this SDK reads version {SCHEMA_VERSION}); upgrade "
                          "edge-resnet on the device")
    _check_keys(raw, _TOP_KEYS, "the manifest")
    name = _need(raw, "name", str, "manifest")
    if not _NAME.match(name):
        raise BundleError(f"manifest: name {name!r} must be lowercase letters, digits, . _ -")
    version = _need(raw, "version", str, "manifest")
    parse_version(version)
    min_sdk = _need(raw, "min_sdk_version", str, "manifest")
    parse_version(min_sdk)
    devices = _need(raw, "devices", list, "manifest")
    if not all(isinstance(d, str) and _NAME.match(d) for d in devices):
        raise BundleError("manifest: devices must be a list of device profile names")
    items = _need(raw, "payload", list, "manifest")
    payload = tuple(_parse_payload(item, i) for i, item in enumerate(items))
    paths = [p.path for p in payload]
    if len(set(paths)) != len(paths):
        raise BundleError("manifest: a payload path is listed twice")
    if not any(p.role == "model" for p in payload):
        raise BundleError("manifest: the bundle carries no model")
    health = _need(raw, "health", dict, "manifest")
    _check_keys(health, _HEALTH_KEYS, "health")
    golden = _need(health, "golden", str, "health")
    if golden not in paths or dict(zip(paths, payload))[golden].role != "golden":
        raise BundleError(f"manifest: health.golden {golden!r} is not a golden payload")
    tolerance = _parse_tolerance(health.get("tolerance"))
    missing = sorted({p.precision or "" for p in payload if p.role == "model"} - set(tolerance))
    if missing:
        raise BundleError(f"manifest: no health tolerance for precision(s) {missing}")
    budget = float(_need(health, "latency_budget_ms", (int, float), "health"))
    if budget <= 0:
        raise BundleError("manifest: health.latency_budget_ms must be positive")
    provenance = _need(raw, "provenance", dict, "manifest")
    created = _need(raw, "created", str, "manifest")
    return Manifest(name, version, created, tuple(devices), min_sdk, payload, provenance,
                    golden, tolerance, budget, raw, bytes(data))
