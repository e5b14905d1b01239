"""The classifier: a backbone that embeds an image, and a linear head with one row per class."""

from __future__ import annotations

import torch
from torch import nn

from classifier.backbones import BackboneSpec, build_backbone


class ImageClassifier(nn.Module):
    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, spec: BackboneSpec):
        super().__init__()
        self.features = features
        self.head = nn.Linear(feature_dim, num_classes)
        self.spec = spec

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(backbone: str, num_classes: int, pretrained: bool) -> ImageClassifier:
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    features, spec = build_backbone(backbone, pretrained)
    return ImageClassifier(features, spec.feature_dim, num_classes, spec)
