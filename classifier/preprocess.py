"""Image transforms and the file-backed dataset used for training, evaluation and embedding.

`eval_transform` is the one place that defines inference preprocessing: validation, the embedding pass and
`Predictor` all use it, so a served model sees exactly what it was validated on. It is `eval_resize` (PIL work:
an image to a uint8 tensor at the model's size) followed by `normalise` (tensor work, also on a whole batch), so a
server can resize in its request threads and normalise a batch where it runs the forward.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from classifier.data import LabeledFile
from classifier.images import InvalidImage, decode_image


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToImage(), *normalise(mean, std).transforms]


def eval_resize(size: int) -> v2.Compose:
    """A PIL image -> its uint8 (3, size, size) tensor; the resize is PIL's, so it runs no torch kernel."""
    return v2.Compose([v2.Resize((size, size), antialias=True), v2.ToImage()])


def normalise(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 image tensors (one, or a batch) -> normalised float32."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose([*eval_resize(size).transforms, *normalise(mean, std).transforms])


def train_transform(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    hflip: float = 0.5,
    rotation: float = 15.0,
    jitter: float = 0.2,
) -> v2.Compose:
    """The seed recipe: resize, horizontal flip, rotation, colour jitter (brightness/contrast/saturation)."""
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(hflip),
            v2.RandomRotation(rotation),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
            *_to_normalised_tensor(mean, std),
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
