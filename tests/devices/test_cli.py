"""`edge-resnet devices`, `doctor` and `build` (dry run; the real build needs TensorRT)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Optional

import pytest

from edge_resnet.cli import main
from edge_resnet.devices.detect import Probes
from edge_resnet.devices.doctor import DoctorProbes, cpu_int8_features, run_checks
from edge_resnet.devices.profiles import profile_names
from edge_resnet.engine.trt_api import import_tensorrt


def _tensorrt_present() -> bool:
    try:
        import_tensorrt()
    except Exception:
        return False
    return True


def test_devices_table_and_json(capsys: Any) -> None:
    assert main(["devices"]) == 0
    table = capsys.readouterr().out
    for name in profile_names():
        assert f"\n{name} " in table
    assert main(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["dla_cores"] for d in data}["orin-nx-8gb"] == 1


def test_dry_run_prints_plan_and_engine_name(digits_onnx: Path, tmp_path: Path, capsys: Any) -> None:
    code = main(["build", str(digits_onnx), "--device", "orin-nx-16gb", "--precision", "fp16",
                 "--trt-version", "10.3.0", "--engine-batch", "1:8:16", "--out", str(tmp_path / "eng"),
                 "--dry-run"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["flags"] == ["FP16"] and out["plan"]["batch"] == {"min": 1, "opt": 8, "max": 16}
    assert Path(out["engine"]).parent == tmp_path / "eng"
    assert ".orin-nx-16gb.trt10.3.0.fp16.GPU.b1-8-16." in Path(out["engine"]).name
    assert len(out["cache_key"]["model_sha256"]) == 64
    assert not (tmp_path / "eng").exists()  # a dry run writes nothing


def test_dry_run_refusal_is_one_line_exit_2(digits_onnx: Path, tmp_path: Path, capsys: Any) -> None:
    code = main(["build", str(digits_onnx), "--device", "nano", "--precision", "int8",
                 "--trt-version", "8.2.1", "--out", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no fast INT8" in err and "--precision fp16" in err


def test_dry_run_needs_a_version_without_tensorrt(digits_onnx: Path, tmp_path: Path, capsys: Any) -> None:
    if _tensorrt_present():
        pytest.skip("TensorRT is installed here: its version is the default")
    code = main(["build", str(digits_onnx), "--device", "thor", "--precision", "fp16",
                 "--out", str(tmp_path), "--dry-run"])
    assert code == 2 and "give --trt-version" in capsys.readouterr().err


def test_build_without_tensorrt_fails_in_one_line(digits_onnx: Path, tmp_path: Path, capsys: Any) -> None:
    if _tensorrt_present():
        pytest.skip("TensorRT is installed here; tests/tensorrt builds for real")
    code = main(["build", str(digits_onnx), "--device", "orin-nx-16gb", "--precision", "fp16",
                 "--out", str(tmp_path / "eng")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "TensorRT is not installed" in err and "python3-libnvinfer" in err
    assert not (tmp_path / "eng").exists()


def test_doctor_runs_on_this_machine(capsys: Any) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("machine", "tensorrt", "cuda", "cuda-python", "opencv", "dla", "onnxruntime",
                 "openvino", "cpu-int8"):
        assert f" {name} " in out
    assert main(["doctor", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert all(c["ok"] or c["fix"] for c in checks)  # every failing check names its fix


def test_doctor_on_a_jetson_with_tensorrt() -> None:
    files = {"/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
             "/proc/device-tree/compatible": "nvidia,p3737-0000+p3701-0005\x00nvidia,tegra234\x00",
             "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.4, GCID: 1, BOARD: generic\n",
             "/usr/local/cuda/version.json": '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}',
             "/proc/cpuinfo": "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sha512\n"}
    cv2 = types.SimpleNamespace(__version__="4.8.0", getBuildInformation=lambda: "  GStreamer:   YES (1.20.3)\n")
    modules = {"cv2": cv2, "onnxruntime": None, "openvino": None, "cuda.bindings": None, "cuda": None,
               "pycuda": None}

    def importer(name: str) -> Optional[Any]:
        return modules.get(name)
    probes = DoctorProbes(detect=Probes(read_text=files.get, run=lambda cmd: None,
                                        tensorrt_version=lambda: "10.3.0.30", machine=lambda: "aarch64"),
                          import_module=importer)
    checks = {c.name: c for c in run_checks(probes)}
    assert checks["machine"].ok and "Jetson AGX Orin 64GB" in checks["machine"].detail
    assert "JetPack ~6.2" in checks["machine"].detail
    assert checks["tensorrt"].ok and checks["cuda"].detail == "CUDA toolkit 12.6.68"
    assert checks["dla"].ok and "2 DLA" in checks["dla"].detail
    assert checks["opencv"].ok and checks["cpu-int8"].detail.endswith("asimddp")
    assert not checks["cuda-python"].ok and "cuda-python<13" in checks["cuda-python"].fix
    assert not checks["onnxruntime"].ok and checks["onnxruntime"].fix == "pip install onnxruntime"


def test_doctor_flags_dla_without_tensorrt_support() -> None:
    files = {"/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
             "/proc/meminfo": "MemTotal:       64000000 kB\n"}
    probes = DoctorProbes(detect=Probes(read_text=files.get, run=lambda cmd: None,
                                        tensorrt_version=lambda: "10.16.0", machine=lambda: "aarch64"),
                          import_module=lambda name: None)
    dla = {c.name: c for c in run_checks(probes)}["dla"]
    assert not dla.ok and "TensorRT 10.16.0 has no DLA support" in dla.detail


def test_cpu_int8_features() -> None:
    x86 = "flags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n"
    assert cpu_int8_features(x86) == ["avx512_vnni", "amx_int8"]
    assert cpu_int8_features("flags\t\t: fpu sse avx2 fma\n") == []
