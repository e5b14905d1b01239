"""Serving-side inference from a checkpoint, with exactly the validation preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from classifier.checkpoint import Checkpoint
from classifier.preprocess import eval_transform
from classifier.runtime import resolve_device


class Predictor:
    """Class probabilities for PIL images. Safe to call from several threads: the model is never mutated
    after construction and every call runs under inference_mode in eval mode."""

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.classes: list[str] = list(checkpoint.classes)
        self.device = resolve_device(device)
        self.model = checkpoint.build_model().to(self.device).eval()
        self.transform = eval_transform(checkpoint.input_size, checkpoint.mean, checkpoint.std)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        return cls(Checkpoint.load(path), device)

    def predict(self, image: Image.Image) -> dict[str, float]:
        """Probability of every class (they sum to 1)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[Image.Image]) -> list[dict[str, float]]:
        if not images:
            return []
        batch = torch.stack([self.transform(image.convert("RGB")) for image in images]).to(self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(batch).float(), dim=1).cpu().tolist()
        return [dict(zip(self.classes, row, strict=True)) for row in probs]
