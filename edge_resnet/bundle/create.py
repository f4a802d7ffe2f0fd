"""``bundle create`` (host): pack models into a signed bundle with golden health-check data.

The host runs every model on the golden images with ONNX Runtime, so the manifest's tolerance
for each precision starts from what was measured here (3x the host's own deviation from the FP32
reference, never below a floor per precision, unless the user sets it) and a bundle whose models
already disagree with the reference on the host is never signed. Without ``--reference`` the
first FP32 model is the reference; a bundle of only quantized models uses the first model's own
host logits and says so in the provenance record.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet import __version__
from edge_resnet.bundle.archive import MANIFEST_MEMBER, SIGNATURE_MEMBER
from edge_resnet.bundle.errors import BundleError
from edge_resnet.bundle.health import GoldenSet, compare, run_golden
from edge_resnet.bundle.manifest import (PRECISIONS, ROLES, SCHEMA, SCHEMA_VERSION, Manifest,
                                         Payload, parse_manifest, parse_version)
from edge_resnet.bundle.signing import load_private_key, sign_bytes
from edge_resnet.core import InputError, ModelError
from edge_resnet.fingerprints import sha256_file
from edge_resnet.io_utils import atomic_path

__all__ = ["BundleSpec", "create_bundle", "DEFAULT_LATENCY_BUDGET_MS", "TOLERANCE_FLOOR"]

DEFAULT_LATENCY_BUDGET_MS = 1000.0
# Floor of the max-|logit error| tolerance, as a fraction of the reference's largest |logit|:
# FP32 on another backend/CPU differs by rounding only; FP16 and INT8 by their precision.
TOLERANCE_FLOOR = {"fp32": 1e-3, "fp16": 2e-2, "int8": 5e-2}
_HOST_MARGIN = 3.0


@dataclass
class BundleSpec:
    """Everything ``bundle create`` needs; paths are the user's files."""

    name: str
    version: str
    models: Sequence[Path]
    key: Path
    out: Path
    # (engine key, engine file); key "" = read it from the engine cache's sidecar (<file>.json)
    engines: Sequence[Tuple[str, Path]] = ()
    gallery: Optional[Path] = None
    devices: Sequence[str] = ()
    golden_images: Optional[Path] = None
    golden_count: int = 4
    reference: Optional[Path] = None
    tolerance: Dict[str, float] = field(default_factory=dict)  # precision -> max_abs
    latency_budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    min_sdk_version: str = __version__
    int8_weights: bool = False  # store INT8 QDQ weights as int8 initializers (~4x smaller)


def _model_record(path: Path) -> Tuple[str, Dict[str, str]]:
    """(precision, edge-resnet metadata) of an ONNX file; refuses external-data models."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    from edge_resnet.backends.onnxruntime import onnx_precision

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{path} is not an ONNX model: {exc}") from None
    if any(uses_external_data(t) for t in model.graph.initializer):
        raise InputError(f"{path} keeps weights in external data files; save it as one file")
    meta = {p.key: p.value for p in model.metadata_props if p.key.startswith("edge_resnet.")}
    precision = json.loads(meta["edge_resnet.precision"]) if "edge_resnet.precision" in meta \
        else onnx_precision([str(i.type) for i in model.graph.input],
                            [n.op_type for n in model.graph.node])
    if precision not in PRECISIONS:
        raise ModelError(f"{path}: unknown precision {precision!r} in its metadata")
    return precision, meta


def _int8_weight_models(models: List[Tuple[Path, Tuple[str, Dict[str, str]]]], tmp: Path
                        ) -> Tuple[List[Tuple[Path, Tuple[str, Dict[str, str]]]], List[str]]:
    """Replace each INT8 model by its int8-weights twin (same file name, in ``tmp``)."""
    from edge_resnet.calibration.int8_weights import int8_weights_file

    out, converted = [], []
    for path, (precision, meta) in models:
        if precision == "int8" and meta.get("edge_resnet.int8_weights") != "true":
            twin = tmp / "int8w" / path.name
            int8_weights_file(path, twin)
            out.append((twin, _model_record(twin)))
            converted.append(f"models/{path.name}")
        else:
            out.append((path, (precision, meta)))
    if not converted:
        raise InputError("int8_weights: no INT8 QDQ model among BundleSpec.models to convert")
    return out, converted


def _golden_images(folder: Optional[Path], count: int, size: int) -> List[np.ndarray]:
    """``count`` images from the user's folder, or deterministic synthetic scenes."""
    if count < 1:
        raise InputError(f"golden_count={count}: must be at least 1")
    if folder is not None:
        from edge_resnet.images import ImageFolder, read_image

        records = ImageFolder(folder, labeled=False).sample(count)
        return [read_image(r.path) for r in records]
    rng = np.random.default_rng(20261123)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0.5, 6.0, size=3)
        base = np.stack([np.sin(a * xx * 6.28), np.cos(b * yy * 6.28),
                         np.sin(c * (xx + yy) * 3.14)], axis=-1)
        noise = rng.normal(0.0, 0.15, size=base.shape)
        images.append(np.clip((base + noise) * 100 + 128, 0, 255).astype(np.uint8))
    return images


def _tolerances(spec: BundleSpec, models: List[Tuple[Path, str]], golden: GoldenSet,
                ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Per-precision tolerance from host measurements; refuse models failing it here."""
    scale = float(np.max(np.abs(golden.expected))) or 1.0
    count = len(golden.images)
    measured: Dict[str, Any] = {}
    tolerance: Dict[str, Any] = {}
    for path, precision in models:
        logits, _ = run_golden(path, golden)
        max_abs, agree = compare(logits, golden.expected)
        measured[path.name] = {"precision": precision, "max_abs": max_abs, "top1_agreement": agree}
        floor = TOLERANCE_FLOOR[precision] * scale
        tol = spec.tolerance.get(precision, max(floor, _HOST_MARGIN * max_abs))
        if max_abs > tol:
            raise BundleError(f"{path}: on this host its logits differ from the reference by "
                              f"{max_abs:.4g} > the {precision} tolerance {tol:.4g}; fix the "
                              "model or raise BundleSpec.tolerance")
        slack = 0.0 if precision == "fp32" else 1.0 / count
        agree_min = max(0.0, agree - slack)
        old = tolerance.get(precision)
        if old is not None:
            tol, agree_min = max(tol, old["max_abs"]), min(agree_min, old["min_top1_agreement"])
        tolerance[precision] = {"max_abs": float(tol), "min_top1_agreement": float(agree_min)}
    return tolerance, measured


class _HashingReader:
    """Hashes what tarfile reads from a payload, to prove the bundle holds what was signed."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data


def _add(tar: tarfile.TarFile, name: str, size: int, stream: Any, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, stream)


def _write(out: Path, manifest_bytes: bytes, signature: bytes,
           files: List[Tuple[Payload, Path]], mtime: int) -> None:
    import io

    with atomic_path(out) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST_MEMBER, len(manifest_bytes), io.BytesIO(manifest_bytes), mtime)
            _add(tar, SIGNATURE_MEMBER, len(signature), io.BytesIO(signature), mtime)
            for payload, source in files:
                with open(source, "rb") as fh:
                    reader = _HashingReader(fh)
                    _add(tar, payload.member, payload.size, reader, mtime)
                if reader.digest.hexdigest() != payload.sha256:
                    raise InputError(f"{source} changed while it was being bundled; retry")


def _payload(path: Path, role: str, precision: Optional[str] = None,
             engine_key: Optional[str] = None, name: Optional[str] = None) -> Payload:
    if not path.is_file():
        raise InputError(f"{role} file {path} does not exist")
    digest = sha256_file(path)
    return Payload(f"{ROLES[role]}/{name or path.name}", digest.size, digest.sha256, role,
                   precision, engine_key)


def _engine_payloads(key: str, path: Path) -> List[Tuple[Payload, Path]]:
    """An engine (and, from the engine cache, its sidecar) under its cache key."""
    if key:
        return [(_payload(path, "engine", _engine_precision(key), key), path)]
    from edge_resnet.engine.cache import read_sidecar
    from edge_resnet.fingerprints import sha256_json

    record = read_sidecar(path)
    precision = str(record["key"].get("precision"))
    if precision not in PRECISIONS:
        raise InputError(f"{path}: engine precision {precision!r} is not one of {PRECISIONS}")
    key = sha256_json(record["key"])
    sidecar = path.with_name(path.name + ".json")
    return [(_payload(path, "engine", precision, key), path),
            (_payload(sidecar, "engine", precision, key), sidecar)]


def _engine_precision(key: str) -> str:
    """The precision an engine cache key names (keys carry it, like jetson-inference's)."""
    tokens = set(key.lower().replace("-", ".").replace("_", ".").split("."))
    found = [p for p in PRECISIONS if p in tokens]
    if len(found) != 1:
        raise InputError(f"engine key {key!r} must name exactly one precision of {PRECISIONS}")
    return found[0]


def _check_spec(spec: BundleSpec) -> None:
    parse_version(spec.version)
    parse_version(spec.min_sdk_version)
    if not spec.models:
        raise InputError("a bundle needs at least one model (BundleSpec.models is empty)")
    if spec.latency_budget_ms <= 0:
        raise InputError(f"latency_budget_ms={spec.latency_budget_ms}: must be positive")
    if spec.devices:
        from edge_resnet.devices.profiles import get_profile

        for name in spec.devices:
            get_profile(name)
    unknown = sorted(set(spec.tolerance) - set(PRECISIONS))
    if unknown:
        raise InputError(f"BundleSpec.tolerance names unknown precision(s) {unknown}; use "
                         f"{PRECISIONS}")


def create_bundle(spec: BundleSpec) -> Manifest:
    """Build, sign and write ``spec.out``; return the manifest it carries."""
    _check_spec(spec)
    key = load_private_key(spec.key)
    with tempfile.TemporaryDirectory(prefix="edge-resnet-bundle-") as tmp:
        return _create(spec, key, Path(tmp))


def _create(spec: BundleSpec, key: Any, tmp: Path) -> Manifest:
    models = [(Path(m), _model_record(Path(m))) for m in spec.models]
    int8_weights: List[str] = []
    if spec.int8_weights:
        models, int8_weights = _int8_weight_models(models, tmp)
    files = [(_payload(p, "model", prec), p) for p, (prec, _) in models]
    for engine_key, engine in spec.engines:
        files.extend(_engine_payloads(engine_key, Path(engine)))
    if spec.gallery is not None:
        files.append((_payload(Path(spec.gallery), "gallery"), Path(spec.gallery)))
    reference = Path(spec.reference) if spec.reference else next(
        (p for p, (prec, _) in models if prec == "fp32"), None)
    images = tuple(_golden_images(spec.golden_images, spec.golden_count, 128))
    expected, _ = run_golden(reference or models[0][0], GoldenSet(images, np.zeros((0, 0))))
    golden = GoldenSet(images, expected)
    tolerance, measured = _tolerances(spec, [(p, prec) for p, (prec, _) in models], golden)
    golden.save(tmp / "golden.npz")
    files.append((_payload(tmp / "golden.npz", "golden"), tmp / "golden.npz"))
    paths = [f.path for f, _ in files]
    if len(set(paths)) != len(paths):
        raise InputError("two payload files share a name; rename one")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    provenance = {
        "created_by": f"edge-resnet {__version__}", "host_check": measured,
        "reference": reference.name if reference else
        f"none: {models[0][0].name} on the host (no FP32 model given)",
        "int8_weights": int8_weights,
        "models": {f"models/{p.name}": meta for p, (_, meta) in models}}
    raw = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": spec.name,
        "version": spec.version, "created": now.isoformat().replace("+00:00", "Z"),
        "devices": list(spec.devices), "min_sdk_version": spec.min_sdk_version,
        "payload": [f.to_json() for f, _ in files], "provenance": provenance,
        "health": {"golden": "golden/golden.npz", "tolerance": tolerance,
                   "latency_budget_ms": float(spec.latency_budget_ms)},
    }
    manifest_bytes = (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode("utf-8")
    manifest = parse_manifest(manifest_bytes)  # never sign what a device would refuse
    _write(Path(spec.out), manifest_bytes, sign_bytes(key, manifest_bytes), files,
           int(now.timestamp()))
    return manifest
