"""Training: `full` fine-tuning of backbone + head, or `head` only on cached backbone embeddings.

`train()` is pure (files in, checkpoint and metrics out); ClearML stages wrap it and log what `on_epoch` reports.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from classifier.backbones import DEFAULT_BACKBONE, build_backbone, get_spec
from classifier.checkpoint import Checkpoint
from classifier.data import LabeledFile
from classifier.embeddings import DEFAULT_CACHE_DIR, EmbeddingCache, compute_embeddings
from classifier.growth import grow_head, merge_classes
from classifier.imagenet import ClassMap, parse_class_map, priors_of, resolve_class_map
from classifier.metrics import classification_metrics
from classifier.model import ImageClassifier, build_model
from classifier.preprocess import ImageFileDataset, eval_transform, make_loader, train_transform
from classifier.runtime import amp_dtype, autocast, resolve_device

log = logging.getLogger(__name__)

MODES = ("full", "head")


@dataclass
class TrainConfig:
    """Defaults are the seed recipe. Plain types only, so a ClearML task can connect it and a UI edit it."""

    backbone: str = DEFAULT_BACKBONE
    pretrained: bool = True
    mode: str = "full"  # "full": fine-tune everything; "head": train the head on cached embeddings
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    step_size: int = 5  # StepLR
    gamma: float = 0.5
    seed: int = 0
    num_workers: int = -1  # -1: one DataLoader worker per CPU core, at most 16
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA (ignored on CPU)
    image_size: int = 0  # 0: the backbone's input size
    hflip: float = 0.5
    rotation: float = 15.0
    color_jitter: float = 0.2
    # Head mode: each epoch repeats passes over the embeddings until the run makes at least this many optimiser
    # steps. A few feedback images give only a handful of batches, too few for a new class row to catch up.
    head_min_steps: int = 300
    embedding_cache_dir: str = ""  # "" : $CLASSIFIER_CACHE_DIR/embeddings or ~/.cache/selfimproving-classifier
    # Labels' ImageNet classes, `cat: 281-285; mylabel: none` (classifier.imagenet); a label not named here keeps
    # its parent model's entry or gets the automatic one. Used with pretrained weights only.
    class_map: str = ""
    progress: bool = True

    def __post_init__(self):
        get_spec(self.backbone)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")
        for name in ("epochs", "batch_size", "step_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.head_min_steps < 0:
            raise ValueError(f"head_min_steps must be 0 or more, got {self.head_min_steps}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.image_size < 0 or (self.image_size and self.image_size < 32):
            raise ValueError(f"image_size must be 0 (backbone default) or at least 32, got {self.image_size}.")
        parse_class_map(self.class_map)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict whose values may be strings (as a UI edit returns them); unknown keys are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"Unknown training parameters {unknown}; known: {sorted(fields)}.")
        defaults = cls()
        return cls(**{k: _coerce(v, type(getattr(defaults, k)), k) for k, v in values.items()})

    def input_size(self) -> int:
        return self.image_size or get_spec(self.backbone).input_size


def _coerce(value, kind: type, name: str):
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is bool:
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}.")
    try:
        return kind(float(value)) if kind is int and str(value).strip().endswith(".0") else kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}.") from None


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    metrics: dict  # classification_metrics on the validation files (empty if there are none) + timing
    history: list[dict] = field(default_factory=list)  # one row per epoch, as passed to on_epoch


EpochCallback = Callable[[int, dict], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    config: TrainConfig,
    root: str | Path,
    train_files: Sequence[LabeledFile],
    val_files: Sequence[LabeledFile],
    classes: Sequence[str],
    parent: Checkpoint | None = None,
    on_epoch: EpochCallback | None = None,
    dataset_id: str | None = None,
    parent_model_id: str | None = None,
) -> TrainResult:
    """Train a classifier on `train_files` (relative to `root`) and validate it on `val_files` each epoch.

    With `parent`, start from its weights; the class list becomes the parent's classes in their order followed
    by the new ones (sorted), and the head grows accordingly. `on_epoch(epoch, row)` gets 1-based epochs.
    """
    if not train_files:
        raise ValueError("There are no training files.")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model, classes, input_size, class_map = _initial_model(config, classes, parent)
    unknown = sorted({f.label for f in [*train_files, *val_files]} - set(classes))
    if unknown:
        raise ValueError(f"Files are labelled with classes {unknown} that are not in the class list {classes}.")
    meta = {"dataset_id": dataset_id, "parent_model_id": parent_model_id, "class_map": class_map}
    log.info(
        "Training %s (%s mode) on %d files, classes %s, device %s",
        model.spec.name,
        config.mode,
        len(train_files),
        classes,
        device,
    )
    runner = _train_head if config.mode == "head" else _train_full
    started = time.perf_counter()
    history, val_probs, extra = runner(
        config, model, root, train_files, val_files, classes, input_size, device, on_epoch
    )
    metrics = _final_metrics(val_files, val_probs, classes)
    metrics.update(
        extra, train_seconds=time.perf_counter() - started, num_train=len(train_files), num_val=len(val_files)
    )
    config_dict = config.to_dict() | {"backbone": model.spec.name, "input_size": input_size}
    checkpoint = Checkpoint.from_model(
        model.cpu(), classes, input_size, metrics=metrics, train_config=config_dict, **meta
    )
    return TrainResult(checkpoint, metrics, history)


def _initial_model(
    config: TrainConfig, classes: Sequence[str], parent: Checkpoint | None
) -> tuple[ImageClassifier, list[str], int, ClassMap]:
    """The model to train, its classes, input size and class map (empty without pretrained weights: a random
    ImageNet layer is no prior)."""
    given = parse_class_map(config.class_map)
    if parent is None:
        classes = list(classes)
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"Need a non-empty list of distinct classes, got {classes}.")
        class_map = resolve_class_map(classes, given) if config.pretrained else {}
        model = build_model(config.backbone, len(classes), config.pretrained, priors_of(class_map, classes))
        return model, classes, config.input_size(), class_map
    if parent.backbone != config.backbone:
        log.warning(
            "Parent model uses backbone %s; continuing with it instead of %s.", parent.backbone, config.backbone
        )
    model = parent.build_model().train()
    if config.pretrained and not parent.class_map:
        # A parent from before the prior (or trained without pretrained weights): take the backbone's own layer.
        model.imagenet = build_backbone(parent.backbone, pretrained=True)[1].requires_grad_(False)
    grown = merge_classes(parent.classes, classes)
    class_map = resolve_class_map(grown, given, parent.class_map) if config.pretrained else dict(parent.class_map)
    grow_head(model, parent.classes, grown)
    model.set_priors(priors_of(class_map, grown))  # the new classes' and, where the map was edited, the old ones
    return model, grown, config.image_size or parent.input_size, class_map


def _final_metrics(val_files: Sequence[LabeledFile], probs: np.ndarray | None, classes: list[str]) -> dict:
    if not val_files or probs is None:
        return {"classes": classes}
    index = {name: i for i, name in enumerate(classes)}
    return classification_metrics([index[f.label] for f in val_files], probs, classes)


def _epoch_row(epoch: int, lr: float, loss_sum: float, correct: int, seen: int, seconds: float) -> dict:
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": loss_sum / seen if seen else float("nan"),
        "train_accuracy": correct / seen if seen else float("nan"),
        "epoch_seconds": seconds,
        "train_images_per_s": seen / seconds if seconds > 0 else 0.0,
    }


def _val_row(probs: np.ndarray | None, targets: np.ndarray) -> dict:
    if probs is None or len(targets) == 0:
        return {}
    true_prob = np.clip(probs[np.arange(len(targets)), targets], 1e-15, 1.0)
    return {"val_loss": float(-np.log(true_prob).mean()), "val_accuracy": float((probs.argmax(1) == targets).mean())}


class FullTrainStep:
    """Optimiser, schedule and one step of full fine-tuning; the benchmark drives the very same step."""

    def __init__(self, model: ImageClassifier, config: TrainConfig, device: torch.device):
        cuda = device.type == "cuda"
        self.device = device
        self.memory_format = torch.channels_last if cuda and config.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.step_size, gamma=config.gamma)
        self.use_amp = cuda and config.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and amp_dtype() == torch.float16)
        self.loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch; returns (summed loss, number correct) as device tensors, so no step waits for
        the GPU to finish before queueing the next."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        targets = targets.to(self.device, non_blocking=True)
        with autocast(self.device, self.use_amp):
            logits = self.model(images)
            loss_sum = self.loss_fn(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_sum / len(targets)).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_sum.detach().float(), (logits.argmax(1) == targets).sum()


def _train_full(config, model, root, train_files, val_files, classes, input_size, device, on_epoch):
    spec = model.spec
    train_set = ImageFileDataset(
        root,
        train_files,
        classes,
        train_transform(input_size, spec.mean, spec.std, config.hflip, config.rotation, config.color_jitter),
    )
    val_set = ImageFileDataset(root, val_files, classes, eval_transform(input_size, spec.mean, spec.std))
    # Drop a last batch of one: BatchNorm cannot train on it.
    drop_last = len(train_set) % config.batch_size == 1
    train_loader = make_loader(train_set, config.batch_size, True, config.num_workers, device, config.seed, drop_last)
    val_loader = make_loader(val_set, config.batch_size * 2, False, config.num_workers, device) if val_files else None
    step = FullTrainStep(model, config, device)
    val_targets = np.asarray(val_set.targets, dtype=np.int64)

    history, probs = [], None
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        lr = step.optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False)
        for images, targets in bar:
            batch_loss, batch_correct = step(images, targets)
            loss_sum += batch_loss
            correct += batch_correct
            seen += len(targets)
        step.scheduler.step()
        row = _epoch_row(epoch, lr, loss_sum.item(), int(correct), seen, time.perf_counter() - started)
        if val_loader is not None:
            probs = predict_loader(model, val_loader, device, step.memory_format, step.use_amp)
            row |= _val_row(probs, val_targets)
        history.append(row)
        if on_epoch:
            on_epoch(epoch, row)
    return history, probs, {}


@torch.inference_mode()
def predict_loader(model, loader: DataLoader, device, memory_format=torch.contiguous_format, use_amp=False):
    """Softmax probabilities [N, C] for every batch of `loader`, in order."""
    model.eval()
    out = []
    for images, _ in loader:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with autocast(device, use_amp):
            logits = model(images)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


class HeadAdam:
    """Adam with torch.optim.Adam's defaults and arithmetic (its single-tensor path, step for step; a test holds
    them equal), for the head's two tensors. Written out because the first use of any torch.optim optimizer
    imports torch._dynamo: 1.3-1.9 s of a head-mode train step's ~8 s on 2 cores, for a few hundred tiny steps."""

    def __init__(self, params: list[nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.steps = params, lr, betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step_size = self.lr / (1 - beta1**self.steps)
        bias_correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        for param, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = param.grad
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            param.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)


def _train_head(config, model, root, train_files, val_files, classes, input_size, device, on_epoch):
    cache = EmbeddingCache(config.embedding_cache_dir or DEFAULT_CACHE_DIR)
    embed = dict(
        input_size=input_size,
        cache=cache,
        device=device,
        batch_size=config.batch_size * 2,
        num_workers=config.num_workers,
        progress=config.progress,
    )
    x_train, stats_train = compute_embeddings(model, root, train_files, **embed)
    x_val, stats_val = compute_embeddings(model, root, val_files, **embed)
    index = {name: i for i, name in enumerate(classes)}
    y_train = torch.tensor([index[f.label] for f in train_files])
    val_targets = np.asarray([index[f.label] for f in val_files], dtype=np.int64)

    model.to(device)
    head = model.head
    x_train_t, x_val_t = torch.from_numpy(x_train).to(device), torch.from_numpy(x_val).to(device)
    y_train = y_train.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = HeadAdam(list(head.parameters()), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    batches_per_pass = math.ceil(len(train_files) / config.batch_size)
    passes = max(1, math.ceil(config.head_min_steps / (config.epochs * batches_per_pass)))

    prior_train, prior_val = model.prior_terms(x_train_t), model.prior_terms(x_val_t)

    def shuffled_batches():
        # Indexing whole batches of in-memory tensors; a DataLoader would fetch and collate row by row.
        for _ in range(passes):
            order = torch.randperm(len(train_files), generator=generator).to(device)
            for batch in order.split(config.batch_size):
                yield x_train_t[batch], y_train[batch], None if prior_train is None else prior_train[batch]

    history, probs = [], None
    for epoch in range(1, config.epochs + 1):
        head.train()
        loss_sum, correct, seen = 0.0, 0, 0
        lr = optimizer.lr
        started = time.perf_counter()
        for features, targets, prior in shuffled_batches():
            logits = model.classify(features, prior)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(targets)
        if epoch % config.step_size == 0:  # StepLR, as full mode schedules it
            optimizer.lr *= config.gamma
        row = _epoch_row(epoch, lr, loss_sum, correct, seen, time.perf_counter() - started)
        if len(val_files):
            head.eval()
            with torch.inference_mode():
                probs = torch.softmax(model.classify(x_val_t, prior_val), dim=1).cpu().numpy().astype(np.float64)
            row |= _val_row(probs, val_targets)
        history.append(row)
        if on_epoch:
            on_epoch(epoch, row)
    stats = {
        "embeddings_cached": stats_train["embeddings_cached"] + stats_val["embeddings_cached"],
        "embeddings_computed": stats_train["embeddings_computed"] + stats_val["embeddings_computed"],
        "embedding_seconds": stats_train["embedding_seconds"] + stats_val["embedding_seconds"],
    }
    return history, probs, stats
