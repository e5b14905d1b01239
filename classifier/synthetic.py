"""Generated, visually separable images for tests, demos and benchmarks (no dataset can be downloaded here).

Each class has a stable look derived from its name (hue + shape), so a later call that adds images or a new
class never changes the look of the classes that already exist. Every image is unique (random noise and
layout), so content-hash de-duplication keeps them all. Image `i` of a class depends only on
(seed, class name, i): regenerating a folder reproduces it byte for byte.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_KNOWN_HUES = {"cat": 0.02, "dog": 0.6, "rabbit": 0.33}
_SHAPES = ("ellipse", "stripes", "square")


def _name_digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def _class_look(name: str) -> tuple[tuple[int, int, int], str]:
    digest = _name_digest(name)
    hue = _KNOWN_HUES.get(name, (digest % 1000) / 1000.0)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.85)
    shape = {"cat": "ellipse", "dog": "stripes", "rabbit": "square"}.get(name, _SHAPES[digest % len(_SHAPES)])
    return (int(r * 255), int(g * 255), int(b * 255)), shape


def make_image(class_name: str, index: int, size: int = 64, seed: int = 0) -> Image.Image:
    """Image number `index` of `class_name`: the class colour and shape on noise, randomly placed."""
    rng = np.random.default_rng([seed, _name_digest(class_name) % (2**32), index])
    colour, shape = _class_look(class_name)
    base = np.array(colour, dtype=np.float64) * rng.uniform(0.8, 1.1)
    pixels = np.clip(base + rng.normal(0, 18, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    accent = tuple(255 - c for c in colour)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, size=2))
        extent = int(rng.integers(size // 4, size // 2))
        box = (x0, y0, x0 + extent, y0 + extent)
        if shape == "ellipse":
            draw.ellipse(box, fill=accent)
        elif shape == "square":
            draw.rectangle(box, fill=accent)
        else:
            for offset in range(0, extent, max(2, size // 16)):
                draw.line((x0, y0 + offset, x0 + extent, y0 + offset), fill=accent, width=max(1, size // 32))
    return image


def make_image_folder(
    root: str | Path,
    classes: Iterable[str] = ("cat", "dog"),
    per_class: int = 20,
    size: int = 64,
    seed: int = 0,
    start: int = 0,
) -> Path:
    """Write images `start .. start+per_class-1` of each class to `<root>/<class>/<class>_<i>.<ext>`.

    Even indices are JPEG, odd ones PNG, so both decoders are exercised.
    """
    root = Path(root)
    for class_name in classes:
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(start, start + per_class):
            image = make_image(class_name, index, size=size, seed=seed)
            if index % 2 == 0:
                image.save(folder / f"{class_name}_{index:05d}.jpg", format="JPEG", quality=92)
            else:
                image.save(folder / f"{class_name}_{index:05d}.png", format="PNG")
    return root


def hostile_float_tiff(side: int = 6000) -> bytes:
    """A deflated float32 TIFF: about 225 KiB on the wire for 6000x6000, ~144 MB of pixels once decoded (the
    decode-budget tests and benchmark upload it)."""
    pixels = np.zeros((side, side), dtype=np.float32)
    pixels[::97, ::89] = 1.0  # not constant, so the whole conversion runs
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()
