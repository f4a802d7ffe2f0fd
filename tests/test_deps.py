"""A machine without PyTorch (a Jetson running only the runtime) gets one line saying what to
install from the host tools, never a ModuleNotFoundError traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_resnet._deps import dependency_error

# Runs the CLI / the lazy API with torch and torchvision made unimportable.
_NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
             "from edge_resnet.cli import main\n")


@pytest.mark.parametrize("argv", [["export", "random", "--out", "{tmp}/m.onnx"],
                                  ["finetune", "{tmp}", "--out", "{tmp}/m.pt"],
                                  ["demo", "--out", "{tmp}/demo"]])
def test_host_commands_without_torch_say_what_to_install(argv: list, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in argv]
    result = subprocess.run([sys.executable, "-c", _NO_TORCH + f"sys.exit(main({args!r}))"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"edge-resnet {argv[0]}: error: this needs PyTorch")
    assert "pip install 'edge-resnet[host]'" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_library_api_without_torch_raises_dependency_error() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edge_resnet\n"
            "from edge_resnet.core import DependencyError\n"
            "try:\n    edge_resnet.load_model\nexcept DependencyError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "this needs PyTorch" in result.stdout


def test_unknown_import_errors_keep_their_traceback() -> None:
    assert dependency_error(ModuleNotFoundError("x", name="edge_resnet.nothing")) is None
    error = dependency_error(ModuleNotFoundError("x", name="cv2.dnn"))
    assert error is not None and "edge-resnet[video]" in str(error)
