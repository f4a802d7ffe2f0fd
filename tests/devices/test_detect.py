"""detect() on strings captured from real machines of each family.

Provenance of the fixtures (public sources, found with code search; quoted, not invented):
- nvidia-smi query and banner: captured by this project on its NVIDIA H100 80GB HBM3 test machine
  (driver 580.159.04, `nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version
  --format=csv,noheader,nounits`).
- Jetson Nano (L4T 32.7.1): `/etc/nv_tegra_release` line from ArduCAM's IMX477 notes for the Nano
  B00 dev kit ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, …"); model string
  "NVIDIA Jetson Nano Developer Kit" and part numbers from rbonghi/jetson_stats
  `jtop/core/jetson_variables.py` (MODULE_NAME_TABLE).
- AGX Xavier reports the device-tree model "Jetson-AGX": NVIDIA's MLPerf harness matches it by that
  name (mlcommons inference results, closed/NVIDIA `code/common/systems/known_hardware.py`,
  `AGX_Xavier = GPU(AliasedName("Jetson-AGX"), …)`), as do public devfreq scripts.
- AGX Orin 64GB (L4T 36.4.7, P-Number p3701-0005, TensorRT 10.3.0.30, CUDA 12.6.85): a public
  `jetson_release` + `nvcc --version` log ("Model: NVIDIA Jetson AGX Orin Developer Kit").
- AGX Orin 32GB (L4T 36.4.4, P-Number p3701-0004): a public `jetson_release` log.
- Orin NX 16GB on JetPack 5.1.2 (L4T 35.4.1, p3767-0000, TensorRT 8.5.2.2, CUDA 11.4.315):
  a public `jetson_release` log ("Model: NVIDIA Orin NX Developer Kit").
- Orin Nano 8GB Super (L4T 36.4.7): public benchmark notes — model "NVIDIA Jetson Orin Nano
  Engineering Reference Developer Kit Super", first line of nv_tegra_release, 7620 MB total memory.
- "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1
  19:57:35 UTC 2023": a public AGX Orin log next to `apt-cache show nvidia-jetpack` 5.1.2-b104.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import pytest

from edge_resnet.devices.detect import Probes, detect, jetpack_for_l4t, parse_l4t_release, parse_nvidia_smi
from edge_resnet.devices.profiles import all_profiles

H100_QUERY = "NVIDIA H100 80GB HBM3, 9.0, 81559, 580.159.04\n"
R32_NANO = ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
            "DATE: Sat Feb 19 17:05:08 UTC 2022\n")
R35_ORIN = ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
            "DATE: Tue Aug  1 19:57:35 UTC 2023\n")
R35_0 = ("# R35 (release), REVISION: 1.0, GCID: 31346300, BOARD: t186ref, EABI: aarch64, "
         "DATE: Thu Aug 25 18:41:45 UTC 2022\n")
R36_NANO_SUPER = ("# R36 (release), REVISION: 4.7, GCID: 42132812, BOARD: generic, EABI: aarch64, "
                  "DATE: Thu Sep 18 22:54:44 UTC 2025\n# KERNEL_VARIANT: oot\n"
                  "TARGET_USERSPACE_LIB_DIR=nvidia\n")
NVCC_126 = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2024 NVIDIA Corporation\n"
            "Built on Tue_Oct_29_23:53:06_PDT_2024\nCuda compilation tools, release 12.6, V12.6.85\n"
            "Build cuda_12.6.r12.6/compiler.35059454_0\n")


def _meminfo(kib: int) -> str:
    return f"MemTotal:       {kib} kB\nMemFree:         1000000 kB\n"


def _probes(files: Dict[str, str], commands: Optional[Dict[str, str]] = None,
            trt: Optional[str] = None, machine: str = "aarch64") -> Probes:
    commands = commands or {}

    def run(cmd: Sequence[str]) -> Optional[str]:
        return commands.get(cmd[0])
    return Probes(read_text=files.get, run=run, tensorrt_version=lambda: trt,
                  machine=lambda: machine)


def test_parse_l4t_release() -> None:
    assert parse_l4t_release(R32_NANO) == "32.7.1"
    assert parse_l4t_release(R35_ORIN) == "35.4.1"
    assert parse_l4t_release(R35_0) == "35.1.0"
    assert parse_l4t_release(R36_NANO_SUPER) == "36.4.7"
    assert parse_l4t_release("not a release file") is None


def test_jetpack_from_l4t() -> None:
    profiles = all_profiles()
    assert jetpack_for_l4t("35.4.1", profiles) == "5.1.2"
    assert jetpack_for_l4t("32.7.1", profiles) == "4.6.1"
    assert jetpack_for_l4t("36.4.7", profiles) == "~6.2"  # newer patch than the table: marked
    assert jetpack_for_l4t("99.1.0", profiles) is None


def test_x86_h100_from_nvidia_smi() -> None:
    found = detect(_probes({"/proc/meminfo": _meminfo(131_000_000)},
                           {"nvidia-smi": H100_QUERY}, machine="x86_64"))
    assert not found.is_jetson and found.profile == "x86-dgpu"
    assert found.compute_capability == "9.0"
    assert (found.gpus[0].name, found.gpus[0].memory_mib) == ("NVIDIA H100 80GB HBM3", 81559)
    assert found.tensorrt is None and found.l4t is None


def test_parse_nvidia_smi_skips_unparseable_lines() -> None:
    gpus = parse_nvidia_smi(H100_QUERY + "garbage\n" + "NVIDIA A2, [N/A], 15356, 535.1\n")
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA A2"]
    assert gpus[1].compute_capability is None


def test_host_without_gpu() -> None:
    found = detect(_probes({}, machine="x86_64"))
    assert found.profile is None and "no NVIDIA GPU" in found.profile_reason


def test_jetson_nano() -> None:
    found = detect(_probes({"/proc/device-tree/model": "NVIDIA Jetson Nano Developer Kit\x00",
                            "/proc/device-tree/compatible": "nvidia,p3449-0000-b00+p3448-0000\x00"
                                                            "nvidia,jetson-nano\x00nvidia,tegra210\x00",
                            "/etc/nv_tegra_release": R32_NANO,
                            "/usr/local/cuda/version.txt": "CUDA Version 10.2.300\n",
                            "/proc/meminfo": _meminfo(4_059_600)}))
    assert found.is_jetson and found.profile == "nano"
    assert (found.l4t, found.jetpack, found.cuda) == ("32.7.1", "4.6.1", "10.2.300")
    assert "part number p3448-0000" in found.profile_reason


def test_agx_xavier_old_model_string() -> None:
    found = detect(_probes({"/proc/device-tree/model": "Jetson-AGX\x00",
                            "/etc/nv_tegra_release": R35_0, "/proc/meminfo": _meminfo(32_000_000)}))
    assert found.profile == "agx-xavier" and found.jetpack == "5.0.2"


@pytest.mark.parametrize("part,memory_kib,expected", [
    ("p3701-0005", 64_000_000, "agx-orin-64gb"), ("p3701-0004", 31_000_000, "agx-orin-32gb")])
def test_agx_orin_by_part_number(part: str, memory_kib: int, expected: str) -> None:
    found = detect(_probes(
        {"/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
         "/proc/device-tree/compatible": f"nvidia,p3737-0000+{part}\x00nvidia,{part}\x00nvidia,tegra234\x00",
         "/etc/nv_tegra_release": R36_NANO_SUPER.replace("4.7", "4.4"),
         "/proc/meminfo": _meminfo(memory_kib)},
        {"/usr/local/cuda/bin/nvcc": NVCC_126}, trt="10.3.0.30"))
    assert found.profile == expected
    assert (found.tensorrt, found.cuda, found.l4t) == ("10.3.0.30", "12.6.85", "36.4.4")


@pytest.mark.parametrize("memory_kib,expected", [(15_600_000, "orin-nx-16gb"), (7_600_000, "orin-nx-8gb")])
def test_orin_nx_by_memory_when_no_part_number(memory_kib: int, expected: str) -> None:
    found = detect(_probes({"/proc/device-tree/model": "NVIDIA Orin NX Developer Kit",
                            "/etc/nv_tegra_release": R35_ORIN, "/proc/meminfo": _meminfo(memory_kib)},
                           trt="8.5.2.2"))
    assert found.profile == expected and found.jetpack == "5.1.2"
    assert "memory" in found.profile_reason


def test_orin_nano_super_and_dpkg_fallback() -> None:
    files = {"/proc/device-tree/model":
             "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
             "/proc/meminfo": _meminfo(7620 * 1024)}
    found = detect(_probes(dict(files, **{"/etc/nv_tegra_release": R36_NANO_SUPER})))
    assert found.profile == "orin-nano-8gb" and found.l4t == "36.4.7"
    # No nv_tegra_release (some containers): the nvidia-l4t-core package version answers.
    found = detect(_probes(files, {"dpkg-query": "36.4.7-20250918154033"}))
    assert found.is_jetson and found.l4t == "36.4.7" and found.profile == "orin-nano-8gb"


def test_unknown_jetson_model_is_reported_not_guessed() -> None:
    found = detect(_probes({"/proc/device-tree/model": "NVIDIA Jetson TK1\x00",
                            "/etc/nv_tegra_release": "# R21 (release), REVISION: 8.0\n"}))
    assert found.is_jetson and found.profile is None
    assert "matches no profile" in found.profile_reason


def test_real_machine_detection_runs() -> None:
    found = detect()  # this machine: whatever it is, detection must not raise
    assert found.machine
    assert found.tensorrt is None or found.tensorrt[0].isdigit()
