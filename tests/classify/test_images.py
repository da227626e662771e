"""Opening untrusted bytes: orientation, colour modes, limits, and refusals with reasons."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from classify import images
from classify.pipeline import preprocess

LIMIT = 50_000_000


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """``images.decode`` without the metadata: the upright RGB image."""
    return images.decode(data, max_pixels=max_pixels).image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    # A 40×20 image whose left half is red; orientation 6 means "rotate 90° clockwise to view".
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = open_image(encode(Image.fromarray(pixels), "JPEG", exif=exif), max_pixels=LIMIT)
    assert upright.size == (20, 40)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and bottom[0] < 60  # the red half is now on top


@pytest.mark.parametrize("mode,colour", [("CMYK", (0, 255, 255, 0)), ("L", 128), ("I;16", 65535)])
def test_colour_modes_become_rgb(mode, colour):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = open_image(encode(Image.new(mode, (8, 8), colour), fmt), max_pixels=LIMIT)
    assert image.mode == "RGB"
    if mode == "CMYK":
        assert image.getpixel((4, 4))[0] > 200 and image.getpixel((4, 4))[1] < 60
    if mode == "I;16":
        assert image.getpixel((4, 4)) == (255, 255, 255)


def test_transparency_is_composited_over_white():
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert open_image(encode(transparent, "PNG"), max_pixels=LIMIT).getpixel((1, 1)) == (255, 255, 255)


def test_the_pixel_limit_is_checked_before_decoding():
    with pytest.raises(images.ImageRejected, match="the limit is 100 pixels"):
        open_image(encode(Image.new("RGB", (20, 20)), "PNG"), max_pixels=100)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not an image"),
    (b"%PDF-1.4\n", "not an image"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "not an image"),
])
def test_non_images_are_refused_with_a_reason(data, reason):
    with pytest.raises(images.ImageRejected, match=reason):
        open_image(data, max_pixels=LIMIT)


def test_a_truncated_jpeg_is_refused():
    data = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    with pytest.raises(images.ImageRejected, match="damaged or truncated"):
        open_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_preprocess_bounds_the_derivative_and_strips_metadata():
    exif = Image.Exif()
    exif[0x8825] = {1: "N"}  # a GPS block
    big = Image.new("RGB", (3000, 1500), (10, 20, 30))
    prepared = preprocess(encode(big, "JPEG", exif=exif), max_pixels=LIMIT)
    assert (prepared.width, prepared.height) == (3000, 1500)
    derivative = Image.open(io.BytesIO(prepared.jpeg))
    assert max(derivative.size) == images.DERIVATIVE_MAX_SIDE
    assert not derivative.getexif()


def test_the_hash_follows_the_stored_picture_not_the_file():
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    prepared = preprocess(encode(image, "PNG"), max_pixels=LIMIT)
    assert prepared.sha256 == preprocess(encode(image, "BMP"), max_pixels=LIMIT).sha256
    assert prepared.sha256 == hashlib.sha256(prepared.jpeg).hexdigest()  # anyone can check the stored file
    other = Image.new("RGB", (16, 16), (1, 120, 3))
    assert preprocess(encode(other, "PNG"), max_pixels=LIMIT).sha256 != prepared.sha256


@pytest.mark.parametrize("size,decoded", [((4032, 3024), (2016, 1512)), ((6000, 4000), (3000, 2000)),
                                          ((1600, 1200), (1600, 1200))])
def test_large_jpegs_are_decoded_at_reduced_scale(size, decoded):
    data = encode(Image.new("RGB", size, (120, 90, 60)), "JPEG")
    result = images.decode(data, max_pixels=LIMIT, max_side=images.DERIVATIVE_MAX_SIDE)
    assert result.image.size == decoded and (result.width, result.height) == size
    assert max(images.bounded(result.image).size) <= images.DERIVATIVE_MAX_SIDE
