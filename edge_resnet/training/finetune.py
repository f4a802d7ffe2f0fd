"""Fine-tune a ResNet50 on an image folder and save an edge-resnet checkpoint.

Images go through the SDK's one preprocessing definition (``resize_crop`` + ``normalize``), so
the checkpoint is trained on exactly the pixels that export, calibration, evaluation and the
device runtime will feed it. Decoding and resizing happen once: small datasets are cached in
memory as uint8 arrays, which is what makes a CPU fine-tune of the digits demo take minutes.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from edge_resnet.core import (IMAGENET_MEAN, IMAGENET_STD, DataError, DependencyError,
                              InputError, ModelSpec)
from edge_resnet.export.models import hub_weights_path, load_model, save_checkpoint
from edge_resnet.images import ImageFolder, ImageRecord, SkipCounter, iter_decoded, read_image
from edge_resnet.io_utils import ensure_parent
from edge_resnet.preprocessing import normalize, resize_crop
from edge_resnet.training.options import INIT_CHOICES, LOSS_CHOICES, LossOptions

__all__ = ["FinetuneResult", "INIT_CHOICES", "LOSS_CHOICES", "LossOptions", "evaluate_folder",
           "finetune"]

log = logging.getLogger(__name__)

# Cache decoded, resized images in memory up to this many bytes (uint8).
_CACHE_LIMIT_BYTES = 2 << 30


@dataclass
class FinetuneResult:
    """What a fine-tune produced and how well: per-epoch validation and final metrics."""

    checkpoint: Path
    init: str
    epochs: int
    val_accuracy: List[float]
    train_loss: List[float]
    final_val_accuracy: float
    test_accuracy: Optional[float]
    seconds: float
    num_train: int
    num_val: int
    skipped: int
    recipe: Dict[str, Any] = field(default_factory=dict)


class _Pixels:
    """uint8 NHWC pixels of a list of records: decoded once and cached, or decoded on access.

    Every image is decoded (and, when caching, resized) up front by the SDK's decode layer, in
    ``workers`` threads, which also finds the unreadable files before training starts: they are
    skipped, logged and counted.
    """

    def __init__(self, records: Sequence[ImageRecord], spec: ModelSpec, cache: bool,
                 workers: int = 0) -> None:
        self.spec = spec
        self.records: List[ImageRecord] = []
        self.cached: Optional[np.ndarray] = None
        skips = SkipCounter()
        arrays = []
        # without the cache only readability is kept, not the pixels
        keep = self._resized if cache else self._readable
        for record, pixels in iter_decoded(records, skips, keep, workers):
            self.records.append(record)
            if cache:
                arrays.append(pixels)
        for reason in skips.skipped.values():
            log.warning("skipping %s", reason)
        self.skipped = skips.count
        if cache and arrays:
            self.cached = np.stack(arrays)
        self.labels = np.array([r.label for r in self.records], dtype=np.int64)

    def _resized(self, image: np.ndarray) -> np.ndarray:
        return resize_crop(image, self.spec)

    @staticmethod
    def _readable(image: np.ndarray) -> np.ndarray:
        return image[:0]

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, idx: np.ndarray) -> np.ndarray:
        if self.cached is not None:
            return self.cached[idx]
        return np.stack([resize_crop(read_image(self.records[i].path), self.spec) for i in idx])


def _shift_augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random translation by up to 1/16 of the side (edge padding): safe for any class set.

    No flips: they change the meaning of digits, text and many industrial classes.
    """
    n, h, w, _ = pixels.shape
    pad = max(1, h // 16)
    padded = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(pixels)
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, dy:dy + h, dx:dx + w]
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _build_model(init: str, num_classes: int) -> Tuple[nn.Module, str]:
    """ResNet50 with a fresh ``num_classes`` head; returns (model, init actually used)."""
    from torchvision.models import resnet50

    if init == "auto":
        cached = hub_weights_path("imagenet-v1")[0].is_file()
        init = "imagenet-v1" if cached else "scratch"
        if not cached:
            log.warning("ImageNet V1 weights are not in the torch hub cache (%s); training from "
                        "scratch (recorded in the checkpoint as init=scratch)",
                        hub_weights_path("imagenet-v1")[0])
    if init == "scratch":
        return resnet50(weights=None, num_classes=num_classes), init
    model = load_model(init, download=False).model
    model.fc = nn.Linear(2048, num_classes)  # ResNet50's feature width
    return model, init


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must exist (no silent CPU fallback)."""
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DependencyError(f"device {device!r} asked for but torch sees no CUDA GPU; use "
                              "device=cpu")


def _predict(model: nn.Module, pixels: _Pixels, spec: ModelSpec, batch_size: int) -> np.ndarray:
    model.eval()
    preds = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            idx = np.arange(start, min(start + batch_size, len(pixels)))
            x = torch.from_numpy(normalize(pixels.batch(idx), spec)).to(_device_of(model))
            preds.append(model(x).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def _accuracy(model: nn.Module, pixels: _Pixels, spec: ModelSpec, batch_size: int) -> float:
    if len(pixels) == 0:
        return float("nan")
    return float((_predict(model, pixels, spec, batch_size) == pixels.labels).mean())


def evaluate_folder(model: nn.Module, spec: ModelSpec, folder: "str | Path",
                    batch_size: int = 128) -> Tuple[float, int]:
    """(top-1 accuracy, images used) of a torch model on a labeled folder, SDK preprocessing."""
    data = ImageFolder(folder, labels=spec.labels)
    pixels = _Pixels(data.records, spec, cache=False)
    return _accuracy(model, pixels, spec, batch_size), len(pixels)


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _train_epoch(model: nn.Module, data: _Pixels, spec: ModelSpec, opt: torch.optim.Optimizer,
                 sched: Any, batch_size: int, rng: np.random.Generator, augment: bool,
                 desc: str, progress: bool, loss_fn: nn.Module) -> float:
    from tqdm import tqdm

    model.train()
    order = rng.permutation(len(data))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one sample
        batches = batches[:-1]
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False)
    for idx in bar:
        pixels = data.batch(idx)
        if augment:
            pixels = _shift_augment(pixels, rng)
        x = torch.from_numpy(normalize(pixels, spec)).to(_device_of(model))
        y = torch.from_numpy(data.labels[idx]).to(x.device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.3f}")
    return total / max(seen, 1)


def _loss_head(model: nn.Module, loss: LossOptions, num_classes: int) -> Tuple[nn.Module, Any]:
    """(model to train, loss function). With ``loss.embedding_dim`` the ResNet gets the
    embedding head (and an ``fc`` on the embedding); for ArcFace ``fc`` becomes a cosine
    classifier (trained from the start: ArcFace's class centres are its own, not a softmax
    layer's)."""
    from edge_resnet.export.embedding import POOLED_FEATURES, EmbeddingResNet

    width = POOLED_FEATURES
    if loss.head_dim is not None:
        model = EmbeddingResNet(model, loss.head_dim, num_classes, loss.embedding_dropout)
        width = loss.head_dim
    if loss.name == "ce":
        return model, nn.CrossEntropyLoss()
    from edge_resnet.training.arcface import ArcFaceLoss, CosineClassifier

    model.fc = CosineClassifier(width, num_classes, loss.scale)
    return model, ArcFaceLoss(loss.margin, loss.scale)


def _check_args(resolution: int, resize: Optional[int], epochs: int, batch_size: int, lr: float,
                val_fraction: float, init: str) -> None:
    if init not in INIT_CHOICES:
        raise InputError(f"init must be one of {', '.join(INIT_CHOICES)}, got {init!r}")
    if epochs < 1 or batch_size < 2:
        raise InputError(f"need epochs >= 1 and batch size >= 2 (got {epochs}, {batch_size})")
    if lr <= 0:
        raise InputError(f"learning rate must be positive, got {lr}")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"validation fraction must be in (0, 1), got {val_fraction}")
    ModelSpec(labels=("x",), resolution=resolution, resize=resize)  # validates resolution/resize


def finetune(data_dir: "str | Path", out_checkpoint: "str | Path", *, resolution: int = 224,
             resize: Optional[int] = None, epochs: int = 8, batch_size: int = 64,
             lr: float = 2e-3, weight_decay: float = 0.05, val_fraction: float = 0.1,
             seed: int = 0, init: str = "auto", test_dir: "str | Path | None" = None,
             augment: bool = True, workers: int = 0, threads: int = 0,
             progress: bool = True, loss: Optional[LossOptions] = None,
             device: str = "cpu") -> FinetuneResult:
    """Fine-tune ResNet50 on ``data_dir`` (one subfolder per class) with AdamW + one-cycle.

    A stratified ``val_fraction`` is held out and scored after every epoch; ``test_dir`` (same
    class subfolders), when given, is scored at the end. ``resize=None`` is a plain resize to
    ``resolution``. ``workers`` threads decode images (0: in the calling thread); ``threads`` is
    torch's thread count (0: all cores this process may use; on a machine busy with other
    work 1 thread can be several times faster, as OpenMP threads then wait on each other).
    ``device`` trains on ``cuda``/``cuda:N`` when asked (the checkpoint is saved from the CPU).
    ``loss`` picks softmax cross-entropy (default) or ArcFace for embeddings made for
    matching, with or without an embedding head (:class:`LossOptions`; ArcFace gets a 512-d
    head by default). Without a head the checkpoint is a plain ResNet50; with one it records
    ``embedding_dim`` and export's ``features`` output is the embedding.
    Deterministic for a seed, machine, torch version and thread count.
    """
    _check_args(resolution, resize, epochs, batch_size, lr, val_fraction, init)
    _check_device(device)
    if threads < 0 or workers < 0:
        raise InputError(f"threads and workers must be >= 0 (got {threads}, {workers})")
    ensure_parent(out_checkpoint)  # a bad output path fails now, not after training
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or _threads())
    try:
        return _finetune(Path(data_dir), Path(out_checkpoint), resolution, resize, epochs,
                         batch_size, lr, weight_decay, val_fraction, seed, init,
                         None if test_dir is None else Path(test_dir), augment, workers,
                         progress, loss or LossOptions(), device)
    finally:
        torch.set_num_threads(previous_threads)


def _finetune(data_dir: Path, out_checkpoint: Path, resolution: int, resize: Optional[int],
              epochs: int, batch_size: int, lr: float, weight_decay: float,
              val_fraction: float, seed: int, init: str, test_dir: Optional[Path],
              augment: bool, workers: int, progress: bool,
              loss: LossOptions, device: str) -> FinetuneResult:
    start = time.perf_counter()
    _seed_everything(seed)
    folder = ImageFolder(data_dir, labeled=True)
    spec = ModelSpec(labels=folder.classes, resolution=resolution, resize=resize,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)
    train_rec, val_rec = folder.split(val_fraction, seed=seed)
    cache = len(folder) * resolution * resolution * 3 <= _CACHE_LIMIT_BYTES
    train = _Pixels(train_rec, spec, cache, workers)
    val = _Pixels(val_rec, spec, cache, workers)
    if len(train) < 2:
        raise DataError(f"{data_dir}: need at least 2 readable training images, got {len(train)}")
    model, used_init = _build_model(init, len(spec.labels))
    model, loss_fn = _loss_head(model, loss, len(spec.labels))
    model.to(device)
    log.info("fine-tuning ResNet50 (init=%s) on %d images, validating on %d, %d classes",
             used_init, len(train), len(val), len(spec.labels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, len(train) // batch_size + (len(train) % batch_size >= 2))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    rng = np.random.default_rng(seed)
    val_acc: List[float] = []
    losses: List[float] = []
    for epoch in range(epochs):
        if loss.name == "arcface":
            loss_fn.margin = loss.margin * min(1.0, (epoch + 1) / max(1, loss.warmup_epochs))
        losses.append(_train_epoch(model, train, spec, opt, sched, batch_size, rng, augment,
                                   f"epoch {epoch + 1}/{epochs}", progress, loss_fn))
        val_acc.append(_accuracy(model, val, spec, 2 * batch_size))
        log.info("epoch %d/%d: train loss %.4f, val accuracy %.4f", epoch + 1, epochs,
                 losses[-1], val_acc[-1])
    model.eval()
    if loss.name == "arcface":
        from edge_resnet.training.arcface import to_linear

        model.fc = to_linear(model.fc)  # type: ignore[arg-type]
    model.to(device)
    test_acc = evaluate_folder(model, spec, test_dir)[0] if test_dir is not None else None
    recipe = {"resolution": resolution, "resize": resize, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
              "val_fraction": val_fraction, "seed": seed, "init_requested": init,
              "init": used_init, "augment": augment, "optimizer": "AdamW",
              "schedule": "OneCycleLR", "data_dir": str(data_dir),
              "torch": str(torch.__version__), "device": device, **loss.recipe()}
    skipped = train.skipped + val.skipped
    result = FinetuneResult(out_checkpoint, used_init, epochs, val_acc, losses,
                            val_acc[-1], test_acc, 0.0, len(train), len(val), skipped, recipe)
    result.seconds = time.perf_counter() - start
    metrics = {k: v for k, v in asdict(result).items()
               if k in ("val_accuracy", "train_loss", "final_val_accuracy", "test_accuracy",
                        "seconds", "num_train", "num_val", "skipped")}
    model.cpu()
    save_checkpoint(out_checkpoint, model, spec,
                    {"recipe": recipe, "metrics": metrics, "init": used_init})
    return result
