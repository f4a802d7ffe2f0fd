"""``edge-resnet devices``, ``edge-resnet doctor`` and ``edge-resnet build``: thin layers.

``build --dry-run`` prints the plan (or the refusal, exit 2) with no TensorRT installed, so a
host can check what a device will build; without it the build runs through
:mod:`edge_resnet.engine.builder` and needs TensorRT on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from edge_resnet.cli_args import (add_deprecated_alias, add_engine_batch_args, add_json_args,
                                  add_output_args, add_profile_args)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("devices", help="list device profiles (Nano … Thor, x86 dGPU)")
    add_json_args(dev)
    dev.set_defaults(func=_devices)

    doc = subparsers.add_parser("doctor", help="what this machine is and which runtimes work")
    add_json_args(doc)
    doc.set_defaults(func=_doctor)

    b = subparsers.add_parser(
        "build", help="build a TensorRT engine for a device profile (or plan it: --dry-run)",
        description="Plan and build a TensorRT engine. MODEL: the FP32, FP16 and/or QDQ ONNX "
                    "of one network; the plan picks the one the precision and TensorRT need.")
    b.add_argument("model", nargs="+", type=Path, help="ONNX file(s) of the same network")
    add_profile_args(b, "auto", "the target's profile, or auto (default): detect this machine")
    b.add_argument("--precision", required=True, choices=["fp32", "fp16", "int8"])
    b.add_argument("--trt-version", help="TensorRT of the target (default: the installed one)")
    b.add_argument("--calibration-cache", type=Path, help="implicit INT8 (TensorRT < 11)")
    b.add_argument("--dla", type=int, dest="dla_core", help="DLA core to build for")
    b.add_argument("--max-gpu-fallback", type=int,
                   help="with --dla: fail when more than N layers fall back to the GPU")
    add_engine_batch_args(b, "1", "default 1; --batch is a deprecated alias")
    add_deprecated_alias(b, "--batch", "--engine-batch", "engine_batch")
    b.add_argument("--workspace-mib", type=int, help="builder workspace limit in MiB")
    b.add_argument("--opt-level", type=int, dest="optimization_level",
                   help="builder optimization level 0..5 (TensorRT 8.6+; default 3)")
    add_output_args(b, "DIR", "engine folder (the engine cache)")
    b.add_argument("--dry-run", action="store_true", help="print the plan JSON; build nothing")
    b.set_defaults(func=_build)


def _devices(args: argparse.Namespace) -> int:
    from edge_resnet.devices.profiles import all_profiles

    profiles = all_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return 0
    rows: List[Tuple[str, ...]] = [("name", "device", "sm", "DLA", "INT8", "FP16", "GB",
                                    "TensorRT (JetPack)")]
    for p in profiles:
        trt = ", ".join(p.tensorrt_versions()) or "any >= 8.5"
        rows.append((p.name, p.display_name, p.compute_capability or "detected",
                     str(p.dla_cores), "yes" if p.fast_int8 else "no",
                     "yes" if p.fast_fp16 else "no", str(p.memory_gb or "-"), trt))
    _print_table(rows)
    return 0


def _print_table(rows: List[Tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _doctor(args: argparse.Namespace) -> int:
    from edge_resnet.devices.doctor import run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
        return 0
    for check in checks:
        mark = "ok " if check.ok else "-- "
        print(f"{mark} {check.name:<12} {check.detail}")
        if not check.ok and check.fix:
            print(f"    {'':<12} fix: {check.fix}")
    return 0


def _resolve_device(name: str) -> Tuple[Any, Optional[str], Optional[str]]:
    """(profile, detected compute capability, installed TensorRT version)."""
    from edge_resnet.core import InputError
    from edge_resnet.devices.detect import detect
    from edge_resnet.devices.profiles import get_profile

    found = detect()
    if name != "auto":
        return get_profile(name), found.compute_capability, found.tensorrt
    if found.profile is None:
        raise InputError(f"--device auto: {found.profile_reason}; give --device NAME")
    return get_profile(found.profile), found.compute_capability, found.tensorrt


def _build(args: argparse.Namespace) -> int:
    from edge_resnet.core import InputError
    from edge_resnet.devices.plan import BatchProfile, BuildRequest, plan_build
    from edge_resnet.engine.artifacts import collect_artifacts
    from edge_resnet.engine.cache import cache_key, engine_path

    if not args.dry_run:
        from edge_resnet.engine.trt_api import import_tensorrt
        import_tensorrt()  # one clear line when TensorRT is absent, before anything is read
    profile, compute, installed = _resolve_device(args.device)
    version = args.trt_version or installed
    if version is None:
        raise InputError("no TensorRT here to ask its version: give --trt-version (the "
                         "target's, e.g. 10.3.0 on JetPack 6.1)")
    if installed and args.trt_version and not args.dry_run and \
            args.trt_version.split(".")[:2] != installed.split(".")[:2]:
        raise InputError(f"--trt-version {args.trt_version} but TensorRT {installed} is "
                         "installed: an engine is built by the TensorRT that will run it")
    artifacts = collect_artifacts(args.model, args.calibration_cache)
    request = BuildRequest(
        precision=args.precision, out_dir=str(args.out),
        batch=BatchProfile.parse(args.engine_batch),
        dla_core=args.dla_core, max_gpu_fallback=args.max_gpu_fallback,
        workspace_mib=args.workspace_mib, optimization_level=args.optimization_level,
        compute_capability=compute)
    plan = plan_build(profile, version, artifacts, request)
    chosen = next(m for m in artifacts.models if m.path == plan.input_model)
    if args.dry_run:
        key = cache_key(plan, chosen.sha256, artifacts.cache_sha256)
        print(json.dumps({"plan": plan.to_dict(), "engine": str(engine_path(plan, key)),
                          "cache_key": key}, indent=2))
        return 0
    from edge_resnet.engine.builder import build_cached

    entry = build_cached(plan, chosen.sha256, artifacts.cache_sha256)
    state = "cached" if entry.hit else "built"
    print(f"{state} {entry.engine} (sidecar {entry.sidecar.name})", file=sys.stdout)
    return 0
