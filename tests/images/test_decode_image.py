"""decode_image: every kind of bad or unusual upload gets a clear refusal or a correct RGB image."""

import io

import numpy as np
import pytest
from PIL import Image

from classifier.images import InvalidImage, decode_bytes, decode_image, finish_decode, open_image, sha256_bytes
from classifier.synthetic import make_image, make_image_folder


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(size=(80, 60), colour=(200, 30, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not a picture", "not an image"),
        (encode(photo(), "PNG")[:60], "corrupt"),
        (encode(photo(), "JPEG")[:200], "corrupt"),
        (encode(photo((10, 10)), "PNG"), "at least 32"),
    ],
    ids=["zero-byte", "non-image", "truncated-png", "truncated-jpeg", "tiny"],
)
def test_refuses_bad_bytes_with_a_clear_message(data, message):
    with pytest.raises(InvalidImage, match=message):
        decode_image(data)


def test_refuses_files_over_the_size_limit():
    data = encode(photo(), "PNG")
    with pytest.raises(InvalidImage, match="limit"):
        decode_image(data, max_bytes=len(data) - 1)


def test_refuses_decompression_bomb_before_decoding_pixels():
    # A 1-bit 20000x20000 PNG is ~50 KB on disk but 400 M pixels once decoded.
    bomb = encode(Image.new("1", (20000, 20000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(InvalidImage, match="pixels"):
        decode_image(bomb)


def test_refuses_huge_dimensions_below_pil_bomb_threshold():
    with pytest.raises(InvalidImage, match="limit"):
        decode_image(encode(Image.new("L", (3000, 3000)), "PNG"), max_pixels=1_000_000)


def test_animated_gif_uses_first_frame():
    frames = [photo(colour=(255, 0, 0)), photo(colour=(0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = decode_image(buffer.getvalue())
    assert image.mode == "RGB"
    red, _, blue = image.getpixel((5, 5))
    assert red > 200 and blue < 50


def test_cmyk_jpeg_becomes_rgb():
    image = decode_image(encode(photo().convert("CMYK"), "JPEG"))
    assert image.mode == "RGB"
    assert image.getpixel((10, 10))[0] > 150


def test_alpha_is_flattened_onto_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image = decode_image(encode(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_range():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    image = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert image.mode == "RGB"
    values = np.asarray(image)[..., 0]
    assert values.min() == 0 and values.max() == 255


def test_exif_orientation_is_applied():
    # Stored landscape 80x40 with "rotate 90" orientation: a viewer shows it portrait 40x80.
    stored = photo((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(encode(stored, "JPEG", exif=exif.tobytes()))
    assert image.size == (40, 80)


def test_synthetic_images_are_reproducible_and_unique(tmp_path):
    make_image_folder(tmp_path / "a", classes=("cat", "dog"), per_class=5, size=48, seed=3)
    make_image_folder(tmp_path / "b", classes=("dog",), per_class=5, size=48, seed=3)
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.*")}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.*")}
    assert len(first) == 10
    for relpath, data in second.items():
        assert first[relpath] == data
    assert len({sha256_bytes(data) for data in first.values()}) == 10
    for data in first.values():
        assert decode_image(data).size == (48, 48)


def test_synthetic_classes_differ_in_colour():
    cat = np.asarray(make_image("cat", 0)).mean(axis=(0, 1))
    dog = np.asarray(make_image("dog", 0)).mean(axis=(0, 1))
    assert np.abs(cat - dog).max() > 60


def test_float_image_is_scaled_over_its_finite_range_in_strips():
    """A float TIFF larger than one conversion strip: scaled from its lowest to its highest finite value,
    with NaN at the low end and +inf at the high end (no float64 copy of the whole image is made)."""
    width, height = 2048, 600  # two strips of rows
    pixels = np.tile(np.linspace(-1.0, 3.0, width, dtype=np.float32), (height, 1))
    pixels[0, 0], pixels[599, 5] = np.nan, np.inf
    image = decode_image(encode(Image.fromarray(pixels), "TIFF"))
    values = np.asarray(image)[..., 0]
    assert image.mode == "RGB" and image.size == (width, height)
    assert values[1, 0] == 0 and values[599, width - 1] == 255 and values[300, width // 2] in (127, 128)
    assert values[0, 0] == 0 and values[599, 5] == 255
    assert np.array_equal(values[10], values[590])  # both strips scaled alike


def test_decode_memory_is_estimated_from_the_header_alone():
    data = encode(Image.fromarray(np.zeros((300, 400), dtype=np.float32)), "TIFF")
    opened = open_image(data)
    assert decode_bytes(opened) >= 300 * 400 * (4 + 4 + 1 + 3)
    assert finish_decode(opened).size == (400, 300)
