"""Inference preprocessing is written without torchvision (its import is the slowest part of a stage's start);
it must stay what torchvision's transforms compute, bit for bit, or cached embeddings and served models drift."""

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from classifier.preprocess import eval_resize, eval_transform, normalise
from classifier.samples import real_photos

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_eval_preprocessing_equals_torchvisions_transforms_bit_for_bit():
    rng = np.random.default_rng(0)
    images = [Image.open(path).convert("RGB") for path, _ in real_photos()]
    images += [Image.fromarray(rng.integers(0, 256, (37, 301, 3), dtype=np.uint8))]  # odd, wide, tiny
    reference_resize = v2.Compose([v2.Resize((96, 96), antialias=True), v2.ToImage()])
    reference_normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))])
    for image in images:
        resized = eval_resize(96)(image)
        expected = reference_resize(image).as_subclass(torch.Tensor)
        assert resized.dtype == torch.uint8 and torch.equal(resized, expected)
        assert torch.equal(eval_transform(96, MEAN, STD)(image), reference_normalise(expected))
    batch = torch.stack([eval_resize(96)(image) for image in images])
    assert torch.equal(normalise(MEAN, STD)(batch), reference_normalise(batch))
    assert torch.equal(batch, torch.stack([eval_resize(96)(image) for image in images]))  # the input is left as it was
