"""Static guarantees the device depends on: Python 3.8 syntax/stdlib, no torch, typed code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Modules that run on Jetsons (JetPack 5 = Python 3.8, no torch).
DEVICE_PATHS = ["edge_resnet/core.py", "edge_resnet/preprocessing.py", "edge_resnet/images.py",
                "edge_resnet/io_utils.py", "edge_resnet/backends", "edge_resnet/evaluation", "edge_resnet/runtime",
                "edge_resnet/devices", "edge_resnet/bundle",
                "edge_resnet/fingerprints.py", "edge_resnet/engine", "edge_resnet/cuda",
                "edge_resnet/faceid", "edge_resnet/datasets", "edge_resnet/cli_args.py"]
DEVICE_MODULES = ["edge_resnet", "edge_resnet.core", "edge_resnet.preprocessing",
                  "edge_resnet.images", "edge_resnet.backends", "edge_resnet.backends.onnxruntime",
                  "edge_resnet.cli", "edge_resnet.fingerprints", "edge_resnet.bundle.install",
                  "edge_resnet.evaluation", "edge_resnet.evaluation.stats",
                  "edge_resnet.evaluation.gates", "edge_resnet.evaluation.plots",
                  "edge_resnet.bundle.archive", "edge_resnet.bundle.health",
                  "edge_resnet.bundle.cli", "edge_resnet.bundle.engines",
                  "edge_resnet.bundle.runner", "edge_resnet.devices.cli", "edge_resnet.engine.builder",
                  "edge_resnet.backends.tensorrt", "edge_resnet.cuda", "edge_resnet.cuda.preprocess",
                  "edge_resnet.backends.pytorch", "edge_resnet.faceid.galleryfile",
                  "edge_resnet.faceid.threshold", "edge_resnet.faceid.cli",
                  "edge_resnet.faceid.openset", "edge_resnet.faceid.plots",
                  "edge_resnet.datasets.glyphs",
                  "edge_resnet.runtime.service", "edge_resnet.runtime.prometheus"]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return path


def test_device_modules_are_python38_clean() -> None:
    paths = [p for p in DEVICE_PATHS if (ROOT / p).exists()]
    result = subprocess.run(
        [_tool("vermin"), "-q", "--no-tips", "--violations", "-t=3.8-", *paths],
        cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stderr


def _device_modules() -> list:
    """DEVICE_MODULES plus every module file under DEVICE_PATHS: a new device-side module is
    import-checked without anyone remembering to list it."""
    found = set(DEVICE_MODULES)
    for entry in DEVICE_PATHS:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            parts = file.relative_to(ROOT).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(found)


def test_device_modules_do_not_import_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {_device_modules()!r}: importlib.import_module(m)\n"
        "import edge_resnet.cli as c; c.build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'tensorrt', 'openvino', 'onnxscript',"
        " 'matplotlib') if m in sys.modules)\n"
        "print(','.join(heavy))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "", f"heavy modules imported at package import: {result.stdout}"


# mypy runs in .ci/run as its own step: it needs tensorrt-stubs (installed there with --no-deps),
# which the README's test command does not install.
