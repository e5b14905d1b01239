"""Serving-side inference from a checkpoint, with exactly the validation preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from classifier.checkpoint import Checkpoint
from classifier.preprocess import eval_resize, normalise
from classifier.runtime import resolve_device


class Predictor:
    """Class probabilities for PIL images. Safe to call from several threads: the model is never mutated
    after construction and every call runs under inference_mode in eval mode.

    `predict_batch` is `prepare` (each image, PIL work only) then `forward` (one batch, all the torch work), so a
    server may prepare in its request threads and run the forwards in one thread of its own."""

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.classes: list[str] = list(checkpoint.classes)
        self.device = resolve_device(device)
        self.model = checkpoint.build_model().to(self.device).eval()
        self._resize = eval_resize(checkpoint.input_size)
        self._normalise = normalise(checkpoint.mean, checkpoint.std)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        return cls(Checkpoint.load(path), device)

    def predict(self, image: Image.Image) -> dict[str, float]:
        """Probability of every class (they sum to 1)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[Image.Image]) -> list[dict[str, float]]:
        if not images:
            return []
        return self.forward(torch.stack([self.prepare(image) for image in images]))

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The image as the model's uint8 (3, size, size) input, before normalisation."""
        return self._resize(image.convert("RGB"))

    def forward(self, batch: torch.Tensor) -> list[dict[str, float]]:
        """Probabilities for a stacked batch of `prepare`d images."""
        with torch.inference_mode():
            inputs = self._normalise(batch.to(self.device))
            probs = torch.softmax(self.model(inputs).float(), dim=1).cpu().tolist()
        return [dict(zip(self.classes, row, strict=True)) for row in probs]
