"""Image transforms and the file-backed dataset used for training, evaluation and embedding.

`eval_transform` is the one place that defines inference preprocessing: validation, the embedding pass and
`Predictor` all use it, so a served model sees exactly what it was validated on. It is `eval_resize` (PIL work:
an image to a uint8 tensor at the model's size) followed by `normalise` (tensor work, also on a whole batch), so a
server can resize in its request threads and normalise a batch where it runs the forward. Both are written
here on PIL and torch, the same operations as torchvision's `v2.Resize` + `v2.ToImage` and `v2.ToDtype` +
`v2.Normalize` (a test holds them equal), because importing torchvision costs a stage process ~1.9 s on 2 cores
and only training's augmentation needs it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from classifier.data import LabeledFile
from classifier.images import InvalidImage, decode_image


class EvalResize:
    """A PIL image -> its uint8 (3, size, size) tensor; the resize is PIL's, so it runs no torch kernel."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class Normalise:
    """uint8 image tensors (one, or a batch) -> normalised float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        scaled = images.to(torch.float32).mul(1.0 / 255)  # torchvision's rounding, bit for bit; a new tensor
        return scaled.sub_(self.mean.to(scaled.device)).div_(self.std.to(scaled.device))


class EvalTransform:
    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        self.resize, self.normalise = EvalResize(size), Normalise(mean, std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalise(self.resize(image))


def eval_resize(size: int) -> EvalResize:
    return EvalResize(size)


def normalise(mean: Sequence[float], std: Sequence[float]) -> Normalise:
    return Normalise(mean, std)


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> EvalTransform:
    return EvalTransform(size, mean, std)


def train_transform(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    hflip: float = 0.5,
    rotation: float = 15.0,
    jitter: float = 0.2,
):
    """The seed recipe: resize, horizontal flip, rotation, colour jitter (brightness/contrast/saturation)."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(hflip),
            v2.RandomRotation(rotation),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
            v2.ToImage(),
            Normalise(mean, std),
        ]
    )


class ImageFileDataset(Dataset):
    """(image tensor, class index) for each file; files must have passed `validate_files`."""

    def __init__(self, root: str | Path, files: Sequence[LabeledFile], classes: Sequence[str], transform):
        self.root = Path(root)
        self.files = list(files)
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({f.label for f in self.files} - set(index))
        if unknown:
            raise ValueError(f"Files are labelled with classes {unknown} that are not in {list(classes)}.")
        self.targets = [index[f.label] for f in self.files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.files[i]
        try:
            # min_side=1: size rules were applied by validation; here only decoding must succeed.
            image = decode_image((self.root / item.relpath).read_bytes(), min_side=1)
        except (OSError, InvalidImage) as exc:
            raise RuntimeError(f"Cannot load {item.relpath}: {exc}") from exc
        return self.transform(image), self.targets[i]


def resolve_workers(num_workers: int) -> int:
    """-1 means one worker per CPU core, at most 16. Workers idle once their prefetch queue is full, so spare
    ones cost memory, not CPU time; a GPU needs many (decoding and augmenting takes ~5 ms of CPU per image)."""
    return min(16, os.cpu_count() or 1) if num_workers < 0 else num_workers


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; python/numpy RNGs follow it so augmentation is
    # reproducible whatever library a transform draws from.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    device: torch.device,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    workers = resolve_workers(num_workers)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_seed_worker,
        generator=generator,
        drop_last=drop_last,
    )
