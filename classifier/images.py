"""Safe image decoding shared by data validation and the app.

Everything that reaches the model goes through `decode_image`: it either returns an 8-bit RGB image in the
orientation a person sees, or raises `InvalidImage` with a message fit to show to that person.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats a browser or camera produces; PIL's other plugins (EPS via Ghostscript, ...) widen the attack surface
# for no benefit.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # ~ 8000 x 5000; larger is a decompression bomb or a scan, not a pet photo
DEFAULT_MIN_SIDE = 32


class InvalidImage(ValueError):
    """The bytes are not an image this system accepts; the message says why."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Image.Image:
    """Decode `data` into an RGB image, EXIF-rotated, alpha flattened onto white, first frame of animations."""
    if not data:
        raise InvalidImage("The file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise InvalidImage(f"The file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB.")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(
            "The file is not an image in a supported format (JPEG, PNG, GIF, BMP, WEBP, TIFF)."
        ) from None
    except Image.DecompressionBombError:
        raise InvalidImage("The image has too many pixels (decompression bomb protection).") from None
    except Exception as exc:  # PIL raises assorted errors on malformed headers
        raise InvalidImage(f"The image header is corrupt: {exc}") from None

    width, height = image.size
    # Checked before decoding the pixels, so a bomb never allocates its memory.
    if width * height > max_pixels:
        raise InvalidImage(f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels.")
    if min(width, height) < min_side:
        raise InvalidImage(f"The image is {width}x{height} pixels; each side must be at least {min_side} px.")

    try:
        image.seek(0)  # animated GIF/WEBP: classify the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except InvalidImage:
        raise
    except Exception as exc:  # truncated data, broken chunks, bad EXIF ...
        raise InvalidImage(f"The image data is corrupt or truncated: {exc}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _high_bit_depth_to_l(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit or float greyscale → 8-bit, scaling the full range instead of clipping to 255."""
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    else:
        scaled = np.clip(pixels, 0, 65535) / 257.0
    return Image.fromarray(scaled.round().astype(np.uint8))
