"""One file with the weights and everything needed to serve them.

Only tensors and plain Python types go in, so `torch.load(weights_only=True)` can read it without executing
pickled code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from classifier.imagenet import priors_of
from classifier.model import ImageClassifier, build_model
from common.files import atomic_write

FORMAT_VERSION = 2
# Format 1: no ImageNet layer and no class map (models from before the prior); still read, and served as they were.
READABLE_VERSIONS = (1, 2)


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    backbone: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dataset_id: str | None = None
    parent_model_id: str | None = None
    metrics: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    class_map: dict[str, list[int]] = field(default_factory=dict)  # label -> ImageNet classes of its prior

    @classmethod
    def from_model(cls, model: ImageClassifier, classes: list[str], input_size: int, **meta) -> Checkpoint:
        state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        spec = model.spec
        return cls(state, list(classes), spec.name, int(input_size), tuple(spec.mean), tuple(spec.std), **meta)

    def build_model(self) -> ImageClassifier:
        """The model with these weights, on CPU, in eval mode."""
        model = build_model(
            self.backbone,
            len(self.classes),
            pretrained=False,
            priors=priors_of(self.class_map, self.classes),
            with_imagenet="imagenet.weight" in self.state_dict,
        )
        model.load_state_dict(self.state_dict)
        return model.eval()

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "state_dict": self.state_dict,
            "classes": list(self.classes),
            "backbone": self.backbone,
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "dataset_id": self.dataset_id,
            "parent_model_id": self.parent_model_id,
            "metrics": _plain(self.metrics),
            "train_config": _plain(self.train_config),
            "class_map": _plain(self.class_map),
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically, so a reader never sees half a checkpoint."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not fsynced: a checkpoint is uploaded to the registry, which is what keeps it.
        with atomic_write(path, durable=False) as handle:
            torch.save(self.to_dict(), handle)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} is not a classifier checkpoint: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{path} is not a classifier checkpoint (format versions {READABLE_VERSIONS}).")
        return cls(
            state_dict=raw["state_dict"],
            classes=list(raw["classes"]),
            backbone=raw["backbone"],
            input_size=int(raw["input_size"]),
            mean=tuple(raw["mean"]),
            std=tuple(raw["std"]),
            dataset_id=raw["dataset_id"],
            parent_model_id=raw["parent_model_id"],
            metrics=raw["metrics"],
            train_config=raw["train_config"],
            class_map=raw.get("class_map", {}),
        )


def _plain(value):
    """Convert numpy scalars, tuples and paths into types weights_only loading accepts (and JSON too)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass that weights_only refuses
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return _plain(value.item())
    raise TypeError(f"Cannot store {type(value).__name__} in a checkpoint: {value!r}")
