"""Model sources: checkpoints of every supported shape, refusals, ImageNet cache/offline paths."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from edge_resnet.core import DependencyError, InputError, ModelError, ModelSpec
from edge_resnet.export.models import (hub_weights_path, imagenet_classes, load_model,
                                       save_checkpoint)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_resnet() -> torch.nn.Module:
    torch.manual_seed(1)
    return resnet50(weights=None, num_classes=3).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_model_has_requested_classes_and_scaled_preprocessing() -> None:
    loaded = load_model("random", num_classes=7, resolution=64)
    assert loaded.spec.labels == tuple(f"class_{i}" for i in range(7))
    assert (loaded.spec.resolution, loaded.spec.resize) == (64, 73)  # 256/224 ratio kept
    assert len(loaded.weights_sha256) == 64 and loaded.spec.weights_sha256 == loaded.weights_sha256
    with torch.inference_mode():
        out = loaded.model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 7)
    assert not loaded.model.training
    again = load_model("random", num_classes=7, resolution=64)
    assert again.weights_sha256 == loaded.weights_sha256  # seeded: the same model every time


def test_random_model_defaults_to_imagenet_shape() -> None:
    loaded = load_model("random")
    assert loaded.spec.num_classes == 1000
    assert (loaded.spec.resolution, loaded.spec.resize) == (224, 256)
    assert (loaded.spec.labels, loaded.spec.label_ids) == imagenet_classes()
    # labels of its own: no ImageNet IDs to pretend they belong to
    named = load_model("random", labels=[f"c{i}" for i in range(1000)])
    assert named.spec.labels[0] == "c0" and named.spec.label_ids is None


def test_imagenet_class_ids_are_in_torchvision_class_order() -> None:
    """ImageNet's class index is the sorted WordNet ID order; spot-check known pairs."""
    names, ids = imagenet_classes()
    assert len(ids) == len(names) == 1000 and list(ids) == sorted(set(ids))
    known = {0: ("tench", "n01440764"), 1: ("goldfish", "n01443537"),
             65: ("sea snake", "n01751748"),  # MLPerf val_map line 1: ..._00000001.JPEG 65
             134: ("crane bird", "n02012849"), 281: ("tabby", "n02123045"),
             504: ("coffee mug", "n03063599"), 999: ("toilet tissue", "n15075141")}
    assert {i: (names[i], ids[i]) for i in known} == known


def test_edge_resnet_checkpoint_round_trip(tmp_path: Path, small_resnet: torch.nn.Module) -> None:
    spec = ModelSpec(labels=("cat", "dog", "eel"), resolution=48, resize=None)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", small_resnet, spec,
                           {"recipe": {"epochs": 3}, "metrics": {"val": 0.5}})
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary left behind
    loaded = load_model(str(path))
    assert loaded.spec.labels == ("cat", "dog", "eel")
    assert (loaded.spec.resolution, loaded.spec.resize) == (48, None)
    assert loaded.weights_sha256 == _sha(path) == loaded.spec.weights_sha256
    assert loaded.extra["recipe"] == {"epochs": 3} and loaded.extra["metrics"] == {"val": 0.5}
    assert _same_weights(loaded.model, small_resnet)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), small_resnet(x))


def test_checkpoint_keeps_class_ids_only_with_its_own_labels(
        tmp_path: Path, small_resnet: torch.nn.Module) -> None:
    spec = ModelSpec(labels=("cat", "dog", "eel"), label_ids=("n1", "n2", "n3"))
    path = save_checkpoint(tmp_path / "m.pt", small_resnet, spec)
    assert load_model(str(path)).spec.label_ids == ("n1", "n2", "n3")
    relabeled = load_model(str(path), labels=["a", "b", "c"]).spec
    assert relabeled.labels == ("a", "b", "c") and relabeled.label_ids is None


def test_plain_state_dict_gets_default_labels_or_a_labels_file(
        tmp_path: Path, small_resnet: torch.nn.Module) -> None:
    path = tmp_path / "plain.pth"
    torch.save(small_resnet.state_dict(), path)
    loaded = load_model(str(path))
    assert loaded.spec.labels == ("class_0", "class_1", "class_2")
    assert (loaded.spec.resolution, loaded.spec.resize) == (224, 256)
    assert _same_weights(loaded.model, small_resnet)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\n\nblue\n")
    assert load_model(str(path), labels_file=labels).spec.labels == ("red", "green", "blue")
    assert load_model(str(path), labels=["a", "b", "c"]).spec.labels == ("a", "b", "c")


def test_wrapped_and_data_parallel_state_dicts_load(tmp_path: Path,
                                                    small_resnet: torch.nn.Module) -> None:
    prefixed = {f"module.{k}": v for k, v in small_resnet.state_dict().items()}
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": prefixed, "epoch": 5}, path)
    assert _same_weights(load_model(str(path)).model, small_resnet)


def test_label_count_mismatch_is_refused(tmp_path: Path, small_resnet: torch.nn.Module) -> None:
    path = tmp_path / "plain.pth"
    torch.save(small_resnet.state_dict(), path)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    with pytest.raises(InputError, match=r"has 2 labels but .* has 3 classes"):
        load_model(str(path), labels_file=labels)
    with pytest.raises(InputError, match=r"has 3 classes \(fc.weight rows\), not 5"):
        load_model(str(path), num_classes=5)
    with pytest.raises(InputError, match="has 4 labels but"):
        load_model("random", num_classes=3, labels=["a", "b", "c", "d"])


def test_resnet18_checkpoint_is_refused_naming_the_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "r18.pt"
    torch.save(resnet18(weights=None, num_classes=3).state_dict(), path)
    with pytest.raises(ModelError, match=r"not a ResNet50 checkpoint: \d+ missing keys "
                                         r"\(e\.g\. layer1\.0\.conv3\.weight.*shape mismatches"):
        load_model(str(path))


def test_dict_without_a_classifier_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    torch.save({"encoder.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(ModelError, match="no 2-D 'fc.weight'"):
        load_model(str(path))
    torch.save({"lr": 0.1, "epoch": 3}, path)
    with pytest.raises(ModelError, match="holds a dict, not a ResNet50 state dict"):
        load_model(str(path))


def test_whole_module_needs_trust_pickle(tmp_path: Path, small_resnet: torch.nn.Module) -> None:
    path = tmp_path / "module.pt"
    torch.save(small_resnet, path)
    with pytest.raises(ModelError, match="can run arbitrary code.*trust_pickle"):
        load_model(str(path))
    assert _same_weights(load_model(str(path), trust_pickle=True).model, small_resnet)


def test_unreadable_or_missing_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        load_model(str(bad))
    with pytest.raises(InputError, match="neither a file nor one of imagenet-v1, imagenet-v2"):
        load_model(str(tmp_path / "missing.pt"))


def _offline(*args: object, **kwargs: object) -> None:
    raise socket.gaierror(-2, "Name or service not known")


def test_imagenet_weights_offline_fail_in_one_line(empty_hub: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _offline)  # no DNS, as on an air-gapped host
    path, url = hub_weights_path("imagenet-v1")
    assert url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert path == empty_hub / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(DependencyError, match="download .*resnet50-0676ba61.pth") as info:
        load_model("imagenet-v1", download=False)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(DependencyError, match=r"cannot download imagenet-v1 weights .*put it at"):
        load_model("imagenet-v1")  # the real download path, failing in DNS
    assert not path.exists()


def test_imagenet_weights_come_from_the_hub_cache(empty_hub: Path) -> None:
    path, _ = hub_weights_path("imagenet-v2")
    path.parent.mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(resnet50(weights=None).state_dict(), path)  # stands in for the real download
    loaded = load_model("imagenet-v2")
    assert loaded.spec.labels[:2] == ("tench", "goldfish") and loaded.spec.num_classes == 1000
    assert loaded.spec.label_ids is not None and loaded.spec.label_ids[:2] == ("n01440764",
                                                                               "n01443537")
    assert (loaded.spec.resolution, loaded.spec.resize) == (224, 232)
    assert loaded.weights_sha256 == _sha(path)
    assert load_model("imagenet-v2", resolution=112).spec.resize == 116
    with pytest.raises(InputError, match="fine-tune it"):
        load_model("imagenet-v2", num_classes=10)
    torch.save(resnet18(weights=None).state_dict(), path)  # a wrong file in the cache
    with pytest.raises(ModelError, match="not a ResNet50 checkpoint: .*missing keys"):
        load_model("imagenet-v2")
