"""What is stored carries pixels only: no comment, text chunk, XMP, EXIF or ICC profile survives the
re-encode, colour profiles are applied (converted to sRGB), and the content hash covers the pixels."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageCms

from classify import images
from classify.pipeline import preprocess

LIMIT = 50_000_000
SECRET = b"owner: Jane Doe, GPS 51.5007N 0.1246W <script>alert(1)</script>"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b"<rdf:Description>" + SECRET + b"</rdf:Description></rdf:RDF></x:xmpmeta>")


def picture(size=(64, 48)) -> Image.Image:
    image = Image.new("RGB", size, (200, 120, 40))
    image.paste((30, 60, 200), (10, 10, 40, 30))
    return image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = SECRET.decode()  # ImageDescription
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 2.5)}  # GPS
    return exif


def srgb_bytes() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def swapped_primaries_profile() -> bytes:
    """An RGB profile whose red and green primaries are exchanged: its (255, 0, 0) is sRGB green."""
    data = bytearray(srgb_bytes())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    data[red + 4:red + 12], data[green + 4:green + 12] = data[green + 4:green + 12], data[red + 4:red + 12]
    data[84:100] = bytes(16)  # the profile ID (an MD5 of the contents) no longer matches: clear it
    return bytes(data).replace(b"sRGB", b"swap").replace("sRGB".encode("utf-16-be"), "swap".encode("utf-16-be"))


def stored(data: bytes) -> tuple[bytes, Image.Image]:
    jpeg = preprocess(data, max_pixels=LIMIT).jpeg
    return jpeg, Image.open(io.BytesIO(jpeg))


def assert_pixels_only(jpeg: bytes, image: Image.Image) -> None:
    assert b"Jane Doe" not in jpeg and b"xmpmeta" not in jpeg
    assert b"Exif" not in jpeg and b"ICC_PROFILE" not in jpeg
    assert not image.getexif()
    for key in ("comment", "xmp", "icc_profile", "exif"):
        assert key not in image.info, key


UPLOADS = {
    "jpeg with comment, EXIF, XMP and ICC": lambda: encode(picture(), "JPEG", comment=SECRET, exif=gps_exif(),
                                                             xmp=XMP, icc_profile=srgb_bytes()),
    "gif with a comment": lambda: encode(picture().convert("P"), "GIF", comment=SECRET),
    "png with text chunks, EXIF and ICC": lambda: png_with_text(),
    "webp with EXIF, XMP and ICC": lambda: encode(picture(), "WEBP", lossless=True, exif=gps_exif(), xmp=XMP,
                                                  icc_profile=srgb_bytes()),
    "tiff with a description": lambda: encode(picture(), "TIFF", description=SECRET.decode()),
}


def png_with_text() -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", SECRET.decode())
    info.add_text("Author", "Jane Doe", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    return encode(picture(), "PNG", pnginfo=info, exif=gps_exif(), icc_profile=srgb_bytes())


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_no_metadata_reaches_the_stored_jpeg(kind):
    jpeg, image = stored(UPLOADS[kind]())
    assert_pixels_only(jpeg, image)


def test_the_same_picture_with_different_comments_hashes_the_same():
    plain = preprocess(encode(picture(), "PNG"), max_pixels=LIMIT)
    for data in (encode(picture(), "PNG", pnginfo=_text("one")), encode(picture(), "PNG", pnginfo=_text("two"))):
        assert preprocess(data, max_pixels=LIMIT).sha256 == plain.sha256
    gifs = [encode(picture().convert("P"), "GIF", comment=comment) for comment in (b"one", SECRET)]
    assert gifs[0] != gifs[1]
    assert preprocess(gifs[0], max_pixels=LIMIT).sha256 == preprocess(gifs[1], max_pixels=LIMIT).sha256


def test_two_jpegs_that_differ_only_in_their_comment_are_duplicates():
    first = preprocess(encode(picture(), "JPEG", quality=95, comment=b"first"), max_pixels=LIMIT)
    second = preprocess(encode(picture(), "JPEG", quality=95, comment=SECRET, exif=gps_exif()), max_pixels=LIMIT)
    assert first.sha256 == second.sha256 and first.jpeg == second.jpeg


def _text(value: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", value)
    return info


def test_an_embedded_colour_profile_is_converted_to_srgb():
    red_in_swapped_space = encode(Image.new("RGB", (32, 32), (255, 0, 0)), "PNG", icc_profile=swapped_primaries_profile())
    jpeg, image = stored(red_in_swapped_space)
    r, g, b = image.convert("RGB").getpixel((16, 16))
    assert g > 200 and r < 80 and b < 80  # it is green once the profile is applied
    assert_pixels_only(jpeg, image)


def test_an_srgb_profile_leaves_the_pixels_alone():
    _, image = stored(encode(Image.new("RGB", (32, 32), (255, 0, 0)), "PNG", icc_profile=srgb_bytes()))
    r, g, b = image.getpixel((16, 16))
    assert r > 240 and g < 15 and b < 15


def test_a_broken_colour_profile_is_ignored_not_fatal():
    _, image = stored(encode(Image.new("RGB", (32, 32), (0, 0, 255)), "PNG", icc_profile=b"not a profile" * 20))
    r, g, b = image.getpixel((16, 16))
    assert b > 240 and r < 15 and g < 15


def test_a_cmyk_jpeg_with_a_profile_becomes_srgb_without_it():
    jpeg, image = stored(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    r, g, b = image.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60
    assert_pixels_only(jpeg, image)


# --- The decode memory budget ------------------------------------------------------------------


def test_an_image_over_the_memory_budget_is_refused_from_its_header():
    data = encode(Image.new("RGB", (2000, 1500)), "PNG")  # 3 MP: ~27 MB to decode and convert
    with pytest.raises(images.ImageRejected, match="memory"):
        images.decode(data, max_pixels=LIMIT, max_bytes=10 * 2**20)
    assert images.decode(data, max_pixels=LIMIT, max_bytes=64 * 2**20).image.size == (2000, 1500)


def test_the_budget_is_checked_before_any_pixel_is_decoded(monkeypatch):
    loaded = []
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(self))
    data = encode(Image.new("RGBA", (3000, 3000)), "PNG")
    with pytest.raises(images.ImageRejected, match="memory"):
        images.decode(data, max_pixels=LIMIT, max_bytes=32 * 2**20)
    assert not loaded


def test_a_large_jpeg_is_reduced_to_fit_the_budget_instead_of_refused():
    data = encode(Image.new("RGB", (4000, 3000), (120, 90, 60)), "JPEG")  # 12 MP
    decoded = images.decode(data, max_pixels=LIMIT, max_side=images.DERIVATIVE_MAX_SIDE, max_bytes=8 * 2**20)
    assert decoded.image.size == (1000, 750) and (decoded.width, decoded.height) == (4000, 3000)


def test_the_memory_estimate_counts_the_conversion_to_rgb():
    assert images.decode_bytes("RGB", (1000, 1000)) == 1000 * 1000 * 3 * 2
    assert images.decode_bytes("RGBA", (1000, 1000)) == 1000 * 1000 * (4 * 2 + 3)
    assert images.decode_bytes("I;16", (1000, 1000)) == 1000 * 1000 * (2 * 2 + 3)
