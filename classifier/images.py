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

_HIGH_BIT_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# Bytes per pixel of a decoded image, by PIL mode (others count as 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_MODE_BYTES |= {"RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_STRIP_PIXELS = 1 << 20  # pixels per strip when converting high-bit-depth images


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


def open_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Image.Image:
    """Read and check the header of `data` without decoding its pixels: size, format and side limits.

    The result is a lazy PIL image; `finish_decode` turns it into RGB, and `decode_bytes` says beforehand how much
    memory that will take, so a caller can budget the decode before paying for it."""
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
    return image


def decode_bytes(image: Image.Image) -> int:
    """An upper bound on the memory `finish_decode(image)` holds at once, from the header alone: the decoded
    pixels and an EXIF-rotated copy, plus the conversion's copies (8-bit grey and RGB for high-bit-depth images,
    whose float32 strips are bounded by `_STRIP_PIXELS`; RGBA, background, composite and RGB for alpha)."""
    pixels = image.size[0] * image.size[1]
    source = _MODE_BYTES.get(image.mode, 4)
    if image.mode in _HIGH_BIT_DEPTH:
        conversion = 1 + 3
    elif image.mode in _ALPHA_MODES or image.mode == "P":
        conversion = 4 + 4 + 4 + 3
    else:
        conversion = 3
    return pixels * (2 * source + conversion) + _STRIP_PIXELS * 12


def finish_decode(image: Image.Image) -> Image.Image:
    """The RGB image of an `open_image` result: EXIF-rotated, alpha flattened onto white, first frame.

    Takes over `image`: each step releases the pixels of the step before, so a conversion never holds the
    decoded source and all its copies at once."""
    try:
        image.seek(0)  # animated GIF/WEBP: classify the first frame
        image.load()
        image = _replacing(image, ImageOps.exif_transpose(image))
        return _to_rgb(image)
    except InvalidImage:
        raise
    except Exception as exc:  # truncated data, broken chunks, bad EXIF ...
        raise InvalidImage(f"The image data is corrupt or truncated: {exc}") from None


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Image.Image:
    """Decode `data` into an RGB image, EXIF-rotated, alpha flattened onto white, first frame of animations."""
    return finish_decode(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_BIT_DEPTH:
        image = _replacing(image, _high_bit_depth_to_l(image))
    if image.mode == "P":
        image = _replacing(image, image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if image.mode in _ALPHA_MODES:
        rgba = _replacing(image, image.convert("RGBA"))
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composite = _replacing(rgba, Image.alpha_composite(background, rgba))
        background.close()
        return _replacing(composite, composite.convert("RGB"))
    if image.mode != "RGB":
        image = _replacing(image, image.convert("RGB"))
    return image


def _replacing(old: Image.Image, new: Image.Image) -> Image.Image:
    """`new`, releasing the pixels of `old` when it is another image."""
    if new is not old:
        old.close()
    return new


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float greyscale → 8-bit, scaling the full range instead of clipping to 255.

    Converted in strips of rows as float32, so the memory beyond the decoded image and its 8-bit result stays
    bounded (a whole-image float64 copy of a 6000x6000 float TIFF alone is 288 MB). Float images are scaled
    from their lowest to their highest finite value; NaN and infinities map to the ends of that range."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    strips = [(0, top, width, min(height, top + rows)) for top in range(0, height, rows)]
    if image.mode == "F":
        low, high = np.inf, -np.inf
        for box in strips:
            values = np.asarray(image.crop(box), dtype=np.float32)
            finite = values[np.isfinite(values)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        if not high > low:
            return Image.new("L", image.size, 0)
        scale = 255.0 / (high - low)
    else:
        low, high, scale = 0.0, 65535.0, 1.0 / 257.0
    result = Image.new("L", image.size)
    for box in strips:
        values = np.asarray(image.crop(box), dtype=np.float32)
        values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
        np.clip(values, low, high, out=values)
        values -= low
        values *= scale
        result.paste(Image.fromarray(values.round().astype(np.uint8)), box[:2])
    return result
