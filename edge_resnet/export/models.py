"""Model sources: torchvision ImageNet weights, checkpoints, or a random ResNet50.

Every later stage needs the same three things from a model: the network, its :class:`ModelSpec`
(labels, resolution, resize, mean/std) and a fingerprint of the weights, so that an ONNX file,
a calibration cache and a report can all say exactly which weights they came from.
``load_model`` returns those together, whatever the source, and refuses anything that is not a
ResNet50 with a message naming the mismatch instead of a wall of ``load_state_dict`` text.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from edge_resnet.core import (IMAGENET_MEAN, IMAGENET_STD, DependencyError, InputError,
                              ModelError, ModelSpec)
from edge_resnet.export.embedding import EmbeddingHead, EmbeddingResNet, embedding_dim_of
from edge_resnet.io_utils import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "EmbeddingHead", "EmbeddingResNet", "IMAGENET_SOURCES",
           "LoadedModel", "embedding_dim_of", "file_sha256", "hub_weights_path",
           "imagenet_classes", "load_model", "save_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "edge-resnet-checkpoint/1"
IMAGENET_SOURCES = {"imagenet-v1": "IMAGENET1K_V1", "imagenet-v2": "IMAGENET1K_V2"}
_DEFAULT_RESOLUTION, _DEFAULT_RESIZE = 224, 256
_EMBEDDING_KEY = "embedding.linear.weight"
# WordNet IDs of the 1000 ImageNet classes in class-index order (package data; see the NOTICE).
_SYNSETS_FILE = Path(__file__).with_name("imagenet_synsets.txt")


@dataclass
class LoadedModel:
    """A ResNet50 in eval mode with the spec every stage needs and a fingerprint of its weights.

    ``extra`` holds what an edge-resnet checkpoint carried besides the weights (recipe, metrics,
    init) so reports can cite how the model was trained.
    """

    model: nn.Module
    spec: ModelSpec
    weights_sha256: str
    source: str
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> Optional[int]:
        """Width of the embedding head, or None for a plain ResNet50 (features are pooled)."""
        return embedding_dim_of(self.model)


def file_sha256(path: "str | Path") -> str:
    from edge_resnet.fingerprints import sha256_file

    return sha256_file(path).sha256


def _state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _resnet50(num_classes: int, embedding_dim: Optional[int] = None) -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None, num_classes=num_classes)
    if embedding_dim is None:
        return model
    return EmbeddingResNet(model, embedding_dim, num_classes)


def _state_embedding_dim(state: Mapping[str, torch.Tensor]) -> Optional[int]:
    """Embedding width a state dict carries (rows of ``embedding.linear.weight``), else None."""
    weight = state.get(_EMBEDDING_KEY)
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def _scaled_resize(resolution: int, resize: Optional[int], base: int) -> Optional[int]:
    """Keep the resize/crop ratio of the original recipe at another resolution."""
    if resize is None or resolution == base:
        return resize
    return max(resolution, int(round(resize * resolution / base)))


def _labels(num_classes: int, labels: Optional[Sequence[str]], labels_file: Optional[Path],
            stored: Optional[Sequence[str]], what: str) -> Tuple[str, ...]:
    """Labels from the user (list or file), else the checkpoint, else class_0..N-1.

    Whatever the origin, the count must match the classifier's rows."""
    if labels is not None and labels_file is not None:
        raise InputError("give class labels either as a list or as a labels file, not both")
    chosen: Optional[Sequence[str]] = labels
    origin = "the given labels"
    if labels_file is not None:
        path = Path(labels_file)
        if not path.is_file():
            raise InputError(f"labels file {path} does not exist")
        chosen = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
        origin = f"labels file {path}"
    if chosen is None and stored is not None:
        chosen, origin = stored, f"the labels stored in {what}"
    if chosen is None:
        return tuple(f"class_{i}" for i in range(num_classes))
    if len(chosen) != num_classes:
        raise InputError(
            f"{origin} has {len(chosen)} labels but {what} has {num_classes} classes "
            f"(fc.weight has {num_classes} rows); give one label per class, in class-index order")
    return tuple(str(x) for x in chosen)


# --------------------------------------------------------------------------- torchvision weights

def imagenet_classes() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(names, WordNet IDs) of the 1000 ImageNet classes, both in class-index order.

    The names are torchvision's (the same for V1 and V2 weights, no download needed); the IDs
    are what ILSVRC2012 folders (``n01440764/...``) are named by. ImageNet's class index is the
    sorted order of the IDs, which the shipped list must have.
    """
    from torchvision.models import ResNet50_Weights

    names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    try:
        ids = tuple(_SYNSETS_FILE.read_text(encoding="ascii").split())
    except OSError as exc:
        raise DependencyError(f"cannot read the ImageNet class IDs {_SYNSETS_FILE} "
                              f"({exc.strerror or exc}); reinstall edge-resnet") from exc
    if len(ids) != len(names) or list(ids) != sorted(set(ids)):
        raise DependencyError(f"{_SYNSETS_FILE} does not hold {len(names)} sorted unique WordNet "
                              "IDs; reinstall edge-resnet")
    return names, ids


def hub_weights_path(source: str) -> Tuple[Path, str]:
    """(cache path, download URL) of the torchvision weights file for ``imagenet-v1``/``-v2``."""
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights[IMAGENET_SOURCES[source]]
    name = os.path.basename(weights.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name, weights.url


def _load_imagenet(source: str, resolution: Optional[int], download: bool) -> LoadedModel:
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights[IMAGENET_SOURCES[source]]
    path, url = hub_weights_path(source)
    if not path.is_file():
        if not download:
            raise DependencyError(
                f"{source} weights are not in the torch hub cache; download {url} to {path}")
        _download(url, path, source)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file in the cache
        raise ModelError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and download {url} "
            "again") from exc
    if not _is_state_dict(state) or _check_resnet50(state, path) != 1000:
        raise ModelError(f"{path} is not the torchvision ResNet50 ImageNet state dict; delete it "
                         f"and download {url} again")
    model = _resnet50(1000)
    model.load_state_dict(state)
    transform = weights.transforms()
    base_res, base_resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    res = resolution or base_res
    sha = file_sha256(path)
    names, ids = imagenet_classes()
    if tuple(weights.meta["categories"]) != names:
        raise DependencyError(f"torchvision's {source} class names differ from its V1 names; "
                              "the ImageNet class IDs cannot be matched to them")
    spec = ModelSpec(labels=names, label_ids=ids, resolution=res,
                     resize=_scaled_resize(res, base_resize, base_res),
                     mean=tuple(transform.mean), std=tuple(transform.std),  # type: ignore[arg-type]
                     weights_sha256=sha, extra={"source": source})
    return LoadedModel(model.eval(), spec, sha, source)


def _download(url: str, path: Path, source: str) -> None:
    """Fetch a weights file into the hub cache; any network failure becomes one clear line."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30.0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        raise DependencyError(
            f"cannot download {source} weights ({reason}); download {url} on a connected machine "
            f"and put it at {path}") from exc
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------- checkpoints

def _read_checkpoint(path: Path, trust_pickle: bool) -> Any:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # garbage, not a pickle of Python objects
            raise ModelError(f"{path} is not a readable PyTorch checkpoint "
                             f"({_unpickler_reason(exc)})") from exc
        if not trust_pickle:
            raise ModelError(
                f"{path} is not a plain state dict (it pickles Python objects, e.g. a whole "
                "nn.Module); loading it can run arbitrary code. Save model.state_dict() instead, "
                "or set trust_pickle if you trust the file") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"cannot unpickle {path} ({type(exc).__name__}: {exc})") from exc


def _unpickler_reason(exc: Exception) -> str:
    """The one informative line of torch's long weights-only error message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else type(exc).__name__


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unpack(obj: Any, path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """(state_dict, edge-resnet extras) from whatever the checkpoint file held."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), {}
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        if obj.get("arch") != "resnet50":
            raise ModelError(f"{path} holds a {obj.get('arch')!r} model; only resnet50 is "
                             "supported")
        extras = {k: v for k, v in obj.items() if k not in ("state_dict", "format", "arch")}
        return dict(obj["state_dict"]), extras
    if _is_state_dict(obj):
        state = dict(obj)
    elif isinstance(obj, Mapping) and any(_is_state_dict(obj.get(k))
                                          for k in ("state_dict", "model")):
        state = dict(obj["state_dict"] if _is_state_dict(obj.get("state_dict")) else obj["model"])
    else:
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a ResNet50 state dict, an "
                         "edge-resnet checkpoint or an nn.Module")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, {}


def _check_resnet50(state: Mapping[str, torch.Tensor], path: Path) -> int:
    """Number of classes of a ResNet50 state dict; ModelError naming the mismatch otherwise."""
    fc = state.get("fc.weight")
    if fc is None or fc.ndim != 2:
        raise ModelError(f"{path} is not a ResNet50 state dict: it has no 2-D 'fc.weight' "
                         f"(keys start with {sorted(state)[:3]})")
    num_classes = int(fc.shape[0])
    reference = _resnet50(num_classes, _state_embedding_dim(state)).state_dict()
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in reference.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems: List[str] = []
    for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", shapes)):
        if items:
            problems.append(f"{len(items)} {name} (e.g. {', '.join(items[:3])})")
    if problems:
        raise ModelError(f"{path} is not a ResNet50 checkpoint: " + "; ".join(problems))
    return num_classes


def _load_checkpoint(path: Path, labels: Optional[Sequence[str]], labels_file: Optional[Path],
                     resolution: Optional[int], trust_pickle: bool,
                     expected_classes: Optional[int]) -> LoadedModel:
    if not path.is_file():
        raise InputError(f"model source {str(path)!r} is neither a file nor one of "
                         f"{', '.join(sorted(IMAGENET_SOURCES))}, random")
    state, extras = _unpack(_read_checkpoint(path, trust_pickle), path)
    num_classes = _check_resnet50(state, path)
    embedding_dim = _state_embedding_dim(state)
    if extras.get("embedding_dim", embedding_dim) != embedding_dim:
        raise ModelError(f"{path} records embedding_dim={extras['embedding_dim']!r} but its "
                         f"weights have {embedding_dim or 'no'} embedding head; the file is "
                         "damaged or was edited: train or save it again")
    if expected_classes is not None and expected_classes != num_classes:
        raise InputError(f"{path} has {num_classes} classes (fc.weight rows), not "
                         f"{expected_classes} as asked")
    stored = ModelSpec.from_metadata(extras["spec"]) if "spec" in extras else None
    spec_labels = _labels(num_classes, labels, labels_file,
                          stored.labels if stored else None, str(path))
    sha = file_sha256(path)
    if stored is None:
        log.info("%s carries no spec; assuming torchvision ImageNet preprocessing "
                 "(resize 256, crop 224, ImageNet mean/std)", path)
        stored = ModelSpec(labels=spec_labels)
    res = resolution or stored.resolution
    if res != stored.resolution:
        log.warning("%s was trained at %d px; using %d px as asked", path, stored.resolution, res)
    ids = stored.label_ids if spec_labels == stored.labels else None  # IDs of other classes
    spec = stored.with_changes(labels=spec_labels, label_ids=ids, resolution=res,
                               resize=_scaled_resize(res, stored.resize, stored.resolution),
                               weights_sha256=sha)
    model = _resnet50(num_classes, embedding_dim)
    model.load_state_dict(state)
    return LoadedModel(model.eval(), spec, sha, str(path), extras)


# --------------------------------------------------------------------------- public API

def load_model(source: str, *, num_classes: Optional[int] = None,
               labels: Optional[Sequence[str]] = None, labels_file: Optional[Path] = None,
               resolution: Optional[int] = None, trust_pickle: bool = False,
               download: bool = True) -> LoadedModel:
    """Load ``imagenet-v1``, ``imagenet-v2``, ``random`` or a checkpoint file as a ResNet50.

    ImageNet weights come from the torch hub cache (downloaded there when ``download`` and the
    network allow). A checkpoint may be a plain state dict, an edge-resnet checkpoint (carries
    the spec) or, with ``trust_pickle``, a whole pickled module. ``resolution`` overrides the
    source's resolution, keeping its resize/crop ratio.
    """
    if resolution is not None and resolution < 8:
        raise InputError(f"resolution {resolution} is too small (minimum 8)")
    if source in IMAGENET_SOURCES:
        if num_classes not in (None, 1000) or labels is not None or labels_file is not None:
            raise InputError(f"{source} has the 1000 ImageNet classes; to change the classes, "
                             "fine-tune it (`edge-resnet finetune --init imagenet-v1`)")
        return _load_imagenet(source, resolution, download)
    if source == "random":
        return _random_model(num_classes, labels, labels_file, resolution)
    return _load_checkpoint(Path(source).expanduser(), labels, labels_file, resolution,
                            trust_pickle, num_classes)


def _random_model(num_classes: Optional[int], labels: Optional[Sequence[str]],
                  labels_file: Optional[Path], resolution: Optional[int]) -> LoadedModel:
    """A seeded, randomly initialised ResNet50: for pipeline tests without any weights.

    With 1000 classes and no labels given it stands in for an ImageNet model: ImageNet's class
    names and WordNet IDs, so its exports read ImageNet folders as ``imagenet-v1`` would.
    """
    if num_classes is None:
        num_classes = len(labels) if labels is not None else 1000
    if num_classes < 1:
        raise InputError(f"num_classes must be positive, got {num_classes}")
    ids: Optional[Tuple[str, ...]] = None
    if num_classes == 1000 and labels is None and labels_file is None:
        labels, ids = imagenet_classes()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _resnet50(num_classes)
    res = resolution or _DEFAULT_RESOLUTION
    sha = _state_dict_sha256(model.state_dict())
    spec = ModelSpec(labels=_labels(num_classes, labels, labels_file, None, "the random model"),
                     label_ids=ids, resolution=res, resize=_scaled_resize(res, _DEFAULT_RESIZE,
                                                           _DEFAULT_RESOLUTION),
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, weights_sha256=sha,
                     extra={"source": "random"})
    return LoadedModel(model.eval(), spec, sha, "random")


def _plain(value: Any) -> Any:
    """Extras as JSON-like builtins (str subclasses such as TorchVersion, numpy scalars and
    paths become str/float/int) so the checkpoint still loads with ``weights_only=True``."""
    def convert(obj: Any) -> Any:
        if hasattr(obj, "item"):  # numpy / torch scalars
            return obj.item()
        if isinstance(obj, (Path, tuple, set)):
            return str(obj) if isinstance(obj, Path) else list(obj)
        raise InputError(f"checkpoint extras must be plain values, got {type(obj).__name__}")

    return json.loads(json.dumps(value, default=convert))


def save_checkpoint(path: "str | Path", model: nn.Module, spec: ModelSpec,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write an edge-resnet checkpoint atomically: weights + spec + recipe/metrics.

    Only tensors and plain Python values are stored so it loads with ``weights_only=True``.
    A model with an embedding head records its width as ``embedding_dim``.
    """
    payload: Dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "arch": "resnet50",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "spec": spec.to_metadata(),
    }
    if embedding_dim_of(model) is not None:
        payload["embedding_dim"] = embedding_dim_of(model)
    for key, value in (extra or {}).items():
        if key in payload:
            raise InputError(f"checkpoint extra key {key!r} is reserved")
        payload[key] = _plain(value)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
