"""``edge-resnet bundle ...``: keygen and create on the host; verify, install, commit, rollback,
status on the device; export to OTA systems. Exit codes: 0 ok, 2 refused (one line on stderr
saying why, nothing changed), 1 health check failed and the release was discarded.
Device side: Python 3.8; the heavy parts import inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from edge_resnet.cli_args import (add_backend_args, add_engine_batch_args, add_json_args,
                                  add_output_args, add_playback_args, add_profile_args,
                                  add_results_args)
from edge_resnet.core import InputError

__all__ = ["register"]

_EXPORTERS = ("mender", "swupdate", "rauc")


def _pair(text: str, what: str) -> Tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise InputError(f"{what} takes KEY=VALUE, got {text!r}")
    return key, value


def _keygen(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.signing import generate_identity

    key, cert = generate_identity(args.out, args.common_name, args.days, args.force)
    print(f"fleet key {key} (keep it off devices), certificate {cert} (install it on devices)")
    return 0


def _create(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.create import BundleSpec, create_bundle

    tolerance: Dict[str, float] = {}
    for item in args.tolerance:
        precision, value = _pair(item, "--tolerance")
        try:
            tolerance[precision] = float(value)
        except ValueError:
            raise InputError(f"--tolerance {item!r}: {value!r} is not a number") from None
    engines = [(k, Path(v)) for k, v in (_pair(e, "--engine") if "=" in e else ("", e)
                                         for e in args.engine)]
    spec = BundleSpec(
        name=args.name, version=args.version, models=[Path(m) for m in args.model],
        key=Path(args.key), out=Path(args.out), engines=engines, gallery=args.gallery,
        devices=args.device, golden_images=args.golden_images, golden_count=args.golden_count,
        reference=args.reference, tolerance=tolerance, latency_budget_ms=args.latency_budget_ms,
        int8_weights=args.int8_weights)
    manifest = create_bundle(spec)
    print(f"{args.out}: {manifest.name} {manifest.version}, {len(manifest.payload)} files, "
          f"{manifest.total_size} bytes, signed")
    return 0


def _options(args: argparse.Namespace) -> Any:
    from edge_resnet.bundle.install import InstallOptions

    from edge_resnet.devices.plan import BatchProfile

    batch = getattr(args, "engine_batch", None)
    return InstallOptions(device=args.device, allow_downgrade=args.allow_downgrade,
                          backend=getattr(args, "backend", "auto"),
                          engine_batch=BatchProfile.parse(batch) if batch else None,
                          pending_timeout_s=getattr(args, "pending_timeout", 900.0))


def _verify(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.install import verify
    from edge_resnet.bundle.signing import load_certificate

    manifest = verify(Path(args.bundle), load_certificate(args.cert), _options(args),
                      Path(args.root) if args.root else None)
    print(f"{args.bundle}: OK — {manifest.name} {manifest.version}, {len(manifest.payload)} "
          "files verified")
    return 0


def _install(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.install import install
    from edge_resnet.bundle.signing import load_certificate

    release = install(Path(args.bundle), load_certificate(args.cert), Path(args.root),
                      _options(args))
    print(f"installed {release.manifest.name} {release.manifest.version} into slot "
          f"{release.slot}; pending: run `edge-resnet bundle commit --root {args.root}` "
          f"within {args.pending_timeout:g} s")
    for line in _engine_lines(release.record):
        print(line)
    return 0


def _engine_lines(record: Dict[str, Any]) -> List[str]:
    """What runs each model of a release and why (engine built, carried, or the ONNX)."""
    lines = [f"    {e['model']}: {e['detail']}" for e in record.get("engines", [])]
    lines += [f"    unused {u['engine']}: {u['reason']}" for u in record.get("unused_engines", [])]
    return lines


def _commit(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.install import commit

    record = commit(Path(args.root))
    print(f"committed {record['name']} {record['version']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.install import rollback

    record = rollback(Path(args.root), args.reason, args.if_pending)
    print(f"active: {record['name']} {record['version']} ({record['state']})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.install import status

    info = status(Path(args.root))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    for slot in ("a", "b"):
        record = info["slots"].get(slot)
        mark = "*" if slot == info["active"] else " "
        text = "empty" if record is None else (
            f"{record['name']} {record['version']} {record['state']}"
            + (f" ({record['reason']})" if record.get("reason") else ""))
        print(f"{mark} {slot}: {text}")
        for line in _engine_lines(record or {}):
            print(line)
    for item in info["events"][-5:]:
        print(f"  {item['time']} {item['event']} {item.get('version') or ''}: {item['detail']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.runner import run_release
    from edge_resnet.runtime.pipeline import PipelineConfig
    from edge_resnet.runtime.sources import SourceOptions

    config = PipelineConfig(max_batch=args.batch_size, top_k=args.top_k,
                            stats_interval_s=args.stats_interval, max_frames=args.max_frames)
    options = SourceOptions(fps=args.fps, loop=args.loop, realtime=args.realtime)
    run_release(Path(args.root), args.source, args.outputs, backend=args.backend,
                threads=args.threads, source_options=options, config=config,
                commit_after=args.commit_after)
    return 0


def _add_run(sub: Any) -> None:
    from edge_resnet.runtime.pipeline import PipelineConfig

    p = sub.add_parser("run", help="run the active release; reload on SIGHUP; commit after "
                       "N good frames", description="Like `edge-resnet run`, on the model of "
                       "ROOT/current. SIGHUP reloads whatever release is active then.")
    p.add_argument("root", help="slot root (--root of install)")
    p.add_argument("source", help="source URI (as for `edge-resnet run`)")
    p.add_argument("outputs", nargs="*", default=["-"], help="output URIs")
    add_backend_args(p, extra="; with a TensorRT engine the install built or took from the "
                              "bundle, auto runs that engine")
    add_playback_args(p)
    add_results_args(p, PipelineConfig())
    p.set_defaults(func=_run)


def _export(args: argparse.Namespace) -> int:
    from edge_resnet.bundle.export import export_bundle

    out = export_bundle(args.format, Path(args.bundle), Path(args.key), Path(args.cert),
                        args.device_type, Path(args.out))
    print(f"{args.format} artifact {out}")
    return 0


def _device_args(parser: argparse.ArgumentParser) -> None:
    add_profile_args(parser, os.environ.get("EDGE_RESNET_DEVICE"),
                     "this device's profile name (default: $EDGE_RESNET_DEVICE)")
    parser.add_argument("--allow-downgrade", action="store_true",
                        help="accept a version lower than (or equal to) the installed one")


def _add_host(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create the fleet signing key and certificate")
    add_output_args(p, "DIR", "folder for fleet.key and fleet.crt")
    p.add_argument("--common-name", default="edge-resnet fleet")
    p.add_argument("--days", type=int, default=3650, help="certificate validity")
    p.add_argument("--force", action="store_true", help="replace an existing fleet key")
    p.set_defaults(func=_keygen)
    p = sub.add_parser("create", help="pack and sign a model release (host)")
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True, help="semantic version, e.g. 1.4.0")
    p.add_argument("--model", action="append", required=True,
                   help="ONNX model (repeat; the first is the one the runtime runs)")
    p.add_argument("--engine", action="append", default=[], metavar="[KEY=]PATH",
                   help="prebuilt engine (repeat): from `edge-resnet build` (its .json sidecar "
                        "gives the cache key and precision), or KEY=PATH with a key naming "
                        "the precision")
    p.add_argument("--gallery", type=Path)
    p.add_argument("--device", action="append", default=[], metavar="PROFILE",
                   help="target device profile (repeat for several)")
    p.add_argument("--golden-images", type=Path, help="folder of images for the health check "
                   "(default: deterministic synthetic images)")
    p.add_argument("--golden-count", type=int, default=4)
    p.add_argument("--reference", type=Path, help="FP32 model for the expected logits "
                   "(default: the first FP32 --model)")
    p.add_argument("--tolerance", action="append", default=[], metavar="PRECISION=MAX_ABS",
                   help="max |logit error| allowed on the device (default: from host runs)")
    p.add_argument("--latency-budget-ms", type=float, default=1000.0,
                   help="median single-image latency the device must meet")
    p.add_argument("--int8-weights", action="store_true",
                   help="store INT8 QDQ weights as int8 (~4x smaller; TensorRT >= 10)")
    p.add_argument("--key", required=True)
    add_output_args(p, "BUNDLE", "the signed bundle file to write")
    p.set_defaults(func=_create)


def _add_device(sub: Any) -> None:
    p = sub.add_parser("verify", help="check signature, hashes, device and version (no writes)")
    p.add_argument("bundle")
    p.add_argument("--cert", required=True)
    p.add_argument("--root", help="slot root, for the anti-downgrade check")
    _device_args(p)
    p.set_defaults(func=_verify)
    p = sub.add_parser("install", help="verify, stage, health-check and switch (pending)")
    p.add_argument("bundle")
    p.add_argument("--cert", required=True)
    p.add_argument("--root", required=True)
    add_backend_args(p, threads=False, extra="; tensorrt: engines or fail; auto: build/use "
                     "TensorRT engines where TensorRT is installed, else check the ONNX on the "
                     "auto choice; onnxruntime/openvino: the ONNX payload on that backend")
    add_engine_batch_args(p, None, "default: the model's fixed batch, else 1; cover the "
                                   "runtime's --batch-size")
    p.add_argument("--pending-timeout", type=float, default=900.0,
                   help="seconds to commit before a status/install rolls back (0: never)")
    _device_args(p)
    p.set_defaults(func=_install)
    for name, func, text in (("commit", _commit, "mark the pending release good"),
                             ("rollback", _rollback, "return to the previous release"),
                             ("status", _status, "show slots, versions and states")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--root", required=True)
        p.set_defaults(func=func)
        if name == "status":
            add_json_args(p)
        if name == "rollback":
            p.add_argument("--reason", default="rolled back by request")
            p.add_argument("--if-pending", action="store_true",
                           help="only roll back a pending release (OTA clients)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bundle", help="signed fleet releases: create, verify, "
                                   "install, commit, rollback, export")
    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION")
    sub.required = True
    _add_host(sub)
    _add_device(sub)
    _add_run(sub)
    p = sub.add_parser("export", help="write an OTA artifact (mender, swupdate, rauc)")
    p.add_argument("format", choices=_EXPORTERS)
    p.add_argument("bundle")
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--device-type", action="append", required=True,
                   help="OTA device type (repeat)")
    add_output_args(p, "FILE", "the OTA artifact to write")
    p.set_defaults(func=_export)


def main(argv: List[str]) -> int:  # pragma: no cover - convenience for `python -m`
    from edge_resnet.cli import main as cli_main

    return cli_main(["bundle", *argv])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
