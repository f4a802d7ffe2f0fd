"""Shipped device profiles and the TensorRT version rules (facts doc, "Corrections and additions")."""

from __future__ import annotations

import json

import pytest

from edge_resnet.core import InputError, ModelError
from edge_resnet.devices import profiles as profiles_mod
from edge_resnet.devices.profiles import all_profiles, get_profile, load_profile_file, profile_names
from edge_resnet.devices.trt_versions import (
    TrtVersion, builder_optimization_level_supported, cache_version, dla_supported,
    implicit_int8_supported, max_onnx_opset, parse_version, strongly_typed_available,
    uint8_input_supported)

EXPECTED = {"nano", "tx2", "xavier-nx", "agx-xavier", "orin-nano-4gb", "orin-nano-8gb",
            "orin-nx-8gb", "orin-nx-16gb", "agx-orin-32gb", "agx-orin-64gb", "thor", "x86-dgpu"}


def test_every_profile_ships_and_loads() -> None:
    assert set(profile_names()) == EXPECTED
    for profile in all_profiles():
        assert profile.name == get_profile(profile.name).name
        json.dumps(profile.to_dict())  # serialisable for `edge-resnet devices --json`


@pytest.mark.parametrize("name,cores", [
    ("nano", 0), ("tx2", 0), ("xavier-nx", 2), ("agx-xavier", 2), ("orin-nano-4gb", 0),
    ("orin-nano-8gb", 0), ("orin-nx-8gb", 1), ("orin-nx-16gb", 2), ("agx-orin-32gb", 2),
    ("agx-orin-64gb", 2), ("thor", 0), ("x86-dgpu", 0)])
def test_dla_cores_are_keyed_by_module_not_compute_capability(name: str, cores: int) -> None:
    assert get_profile(name).dla_cores == cores


def test_orin_nano_and_orin_nx_share_compute_capability_but_not_dla() -> None:
    nano, nx = get_profile("orin-nano-8gb"), get_profile("orin-nx-16gb")
    assert nano.compute_capability == nx.compute_capability == "8.7"
    assert (nano.dla_cores, nx.dla_cores) == (0, 2)


def test_fast_int8_is_off_on_maxwell_and_pascal_only() -> None:
    slow = {p.name for p in all_profiles() if not p.fast_int8}
    assert slow == {"nano", "tx2"}


def test_jetpack_stacks() -> None:
    orin = get_profile("orin-nx-16gb")
    assert orin.tensorrt_versions() == ["8.5.2", "8.6.2", "10.3.0"]
    jp6 = [r for r in orin.jetpacks if r.jetpack == "6.1"][0]
    assert (jp6.l4t, jp6.tensorrt, jp6.cuda, jp6.python) == ("36.4.0", "10.3.0", "12.6", "3.10")
    assert "10.3.0" not in get_profile("agx-xavier").tensorrt_versions()  # no JetPack 6 on Xavier
    assert get_profile("nano").tensorrt_versions()[-1] == "8.2.1"
    assert [r.jetpack for r in get_profile("agx-orin-64gb").releases_for_tensorrt((11, 4))] == ["7.2.2"]


def test_unknown_device_lists_known_ones() -> None:
    with pytest.raises(InputError, match="unknown device 'orin-nx'.*orin-nx-16gb"):
        get_profile("orin-nx")


def test_broken_profile_file_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "kind": "jetson"}))
    with pytest.raises(ModelError, match="lacks"):
        load_profile_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        load_profile_file(bad)
    assert profiles_mod._PROFILE_DIR.is_dir()


@pytest.mark.parametrize("text,expected", [
    ("8.5.2.2", TrtVersion(8, 5, 2)), ("10.3", TrtVersion(10, 3, 0)), ("11.4.1", TrtVersion(11, 4, 1)),
    ("8502", TrtVersion(8, 5, 2)), ("8601", TrtVersion(8, 6, 1)), ("100300", TrtVersion(10, 3, 0))])
def test_parse_version(text: str, expected: TrtVersion) -> None:
    assert parse_version(text) == expected


def test_parse_version_refuses_garbage() -> None:
    with pytest.raises(InputError, match="not like 8.5.2"):
        parse_version("eight")


@pytest.mark.parametrize("version,number", [
    ("8.5.2", 8502), ("8.6.1", 8601), ("8.6.2", 8602), ("10.3.0", 100300), ("10.13.3", 101303)])
def test_cache_version(version: str, number: int) -> None:
    assert cache_version(version) == number


def test_cache_version_refuses_tensorrt_11() -> None:
    with pytest.raises(InputError, match="removed in TensorRT 11.*QDQ"):
        cache_version("11.4.1")


def test_generation_rules() -> None:
    assert not uint8_input_supported("8.4.1") and uint8_input_supported("8.5.2")
    assert implicit_int8_supported("10.13") and not implicit_int8_supported("11.0")
    assert not strongly_typed_available("8.6.2") and strongly_typed_available("10.3")
    assert not builder_optimization_level_supported("8.5.2")
    assert builder_optimization_level_supported("8.6.2")
    assert [max_onnx_opset(v) for v in ("8.2.1", "8.5.2", "8.6.2", "10.3", "11.4")] == [13, 17, 17, 20, 25]


@pytest.mark.parametrize("version,cores,expected", [
    ("8.5.2", 2, True), ("8.6.2", 2, True), ("10.3.0", 2, True), ("10.7.0", 1, True),
    ("10.13.3", 2, False), ("10.16", 2, False), ("11.0", 2, False), ("11.3", 2, False),
    ("11.4.1", 2, True), ("10.3.0", 0, False), ("11.4.1", 0, False)])
def test_dla_by_version_and_module(version: str, cores: int, expected: bool) -> None:
    assert dla_supported(version, cores) is expected
