"""A corpus of bad and awkward uploads, made here, each with its documented outcome (docs/intake.md).

Every upload goes through the real API. The server never answers 500, no temporary file is left
behind, and nothing is half-stored.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageFilter

from classify.models import Item, Membership
from classify.services import classification, intake
from tests.base import make_colour_project, make_user, noisy_image, photo_bytes

pytestmark = pytest.mark.django_db


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png_header(side: int = 30000) -> bytes:
    """A PNG claiming side×side pixels in a few KB: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def animated_gif(frames: int = 10_000) -> bytes:
    first = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).convert("P")
    rest = [Image.new("P", (64, 64), index % 2) for index in range(frames - 1)]
    return encode(first, "GIF", save_all=True, append_images=rest, duration=10, loop=0)


def polyglot() -> bytes:
    """A valid PNG carrying HTML in a text chunk and after IEND."""
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    png = noisy_image((200, 100, 50), seed=3)
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + png_chunk(b"tEXt", b"Comment\x00" + html) + png[iend:] + html


def gps_photo() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 54.0, 0.0)}
    return encode(Image.open(io.BytesIO(photo_bytes("coffee"))), "JPEG", exif=exif)


def blurred_photo() -> bytes:
    return encode(Image.open(io.BytesIO(photo_bytes("chelsea"))).filter(ImageFilter.GaussianBlur(8)), "JPEG")


REFUSED = {  # name: (bytes, words of the 400's error)
    "zero bytes": (b"", "empty"),
    "truncated JPEG": (photo_bytes("coffee")[:3000], "damaged or truncated"),
    "30000x30000 PNG": (huge_png_header(), "the limit is 50,000,000 pixels"),
    "SVG with a script": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "not an image"),
    "EPS": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "not an image"),
    "PDF": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "not an image"),
    "text named .jpg": (b"just some notes, not a photo\n", "not an image"),
    "HTML named .jpg": (b"<!doctype html><script>alert(1)</script>", "not an image"),
}

REJECTED = {  # stored as "rejected" with this reason, no backend call
    "10x10 image": (noisy_image((120, 120, 120), seed=4, size=(10, 10)), "Too small"),
    "black image": (encode(Image.new("RGB", (200, 150)), "PNG"), "Too dark"),
    "white image": (encode(Image.new("RGB", (200, 150), (255, 255, 255)), "PNG"), "Too bright"),
    "blurred photo": (blurred_photo(), "Too blurry"),
    "50:1 strip": (noisy_image((90, 140, 200), seed=5, size=(2500, 50)), "Extreme shape"),
}

ACCEPTED = {  # classified normally
    "10,000-frame GIF": animated_gif(),
    "PNG+HTML polyglot": polyglot(),
    "GPS-tagged photo": gps_photo(),
    "CMYK JPEG": encode(Image.open(io.BytesIO(noisy_image((255, 30, 30), seed=11))).convert("CMYK"), "JPEG"),
    "16-bit PNG": encode(Image.fromarray(np.random.default_rng(6).integers(0, 65535, (80, 80), dtype=np.uint16)), "PNG"),
    "palette with transparency": encode(Image.open(io.BytesIO(noisy_image((30, 30, 220), seed=12))).quantize(16), "PNG",
                                        transparency=0),
}


@pytest.fixture
def api(settings, tmp_path, django_capture_on_commit_callbacks):
    """An API client for a member, with uploads spooled to a watched temporary folder."""
    temp = tmp_path / "upload-temp"
    temp.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temp)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload goes through a temporary file
    user = make_user("rey")
    project = make_colour_project(reviewer=user)
    project.min_sharpness = 3.0  # the real default: the corpus has photos, not flat colours
    project.save()
    client = Client()
    client.force_login(user)

    def post(data: bytes, name: str = "upload.jpg"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("api:project_items", args=[project.slug]),
                                   {"image": SimpleUploadedFile(name, data)})
        assert response.status_code != 500
        return response

    yield post
    assert list(temp.iterdir()) == [], "a temporary upload file was left behind"
    media = Path(settings.MEDIA_ROOT)
    stored = {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()} if media.exists() else set()
    assert stored == set(Item.objects.values_list("image", flat=True)), "a file without its item, or the reverse"


@pytest.mark.parametrize("name", REFUSED)
def test_unusable_files_are_refused_with_a_reason_and_nothing_is_stored(api, name):
    data, words = REFUSED[name]
    response = api(data)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert not Item.objects.exists()


@pytest.mark.parametrize("name", REJECTED)
def test_poor_images_are_kept_as_rejected_with_the_reason_and_never_classified(api, name):
    data, words = REJECTED[name]
    response = api(data)
    assert response.status_code == 201
    item = Item.objects.get(pk=response.json()["id"])
    assert item.status == Item.Status.REJECTED
    assert words in item.status_reason and words in response.json()["status_reason"]
    assert not item.predictions.exists()


@pytest.mark.parametrize("name", ACCEPTED)
def test_awkward_but_good_images_are_normalised_and_classified(api, name):
    response = api(ACCEPTED[name])
    assert response.status_code == 201
    item = Item.objects.get(pk=response.json()["id"])
    assert item.status in {Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW}
    with item.image.open("rb") as handle:
        stored = handle.read()
    derivative = Image.open(io.BytesIO(stored))
    assert derivative.format == "JPEG" and derivative.mode == "RGB"
    assert not derivative.getexif() and b"<script" not in stored and b"GPS" not in stored and b"PhoneMaker" not in stored


def test_a_cmyk_jpeg_keeps_its_colour(api):
    item = Item.objects.get(pk=api(ACCEPTED["CMYK JPEG"]).json()["id"])
    with item.image.open("rb") as handle:
        red, green, blue = np.asarray(Image.open(handle).convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 90 and blue < 90  # the red that went in, not an inverted or cyan cast


def test_an_animated_gif_is_classified_from_its_first_frame(api):
    item = Item.objects.get(pk=api(ACCEPTED["10,000-frame GIF"]).json()["id"])
    assert (item.width, item.height, item.source_format) == (64, 64, "GIF")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_ends_upright(api, orientation):
    upright = np.zeros((60, 90, 3), np.uint8)
    upright[:30, :45] = (255, 0, 0)  # red top-left quadrant, the rest black and noisy
    upright[30:, 45:] = np.random.default_rng(7).integers(0, 255, (30, 45, 3))
    upright[:30, 45:] = (40, 40, 200)
    upright[30:, :45] = (40, 200, 40)
    undo = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    raw = Image.fromarray(upright)
    raw = raw.transpose(undo) if undo is not None else raw
    exif = Image.Exif()
    exif[0x0112] = orientation
    item = Item.objects.get(pk=api(encode(raw, "JPEG", exif=exif, quality=95)).json()["id"])
    with item.image.open("rb") as handle:
        stored = Image.open(handle).convert("RGB")
    assert stored.size == (90, 60) and (item.width, item.height) == (90, 60)
    r, g, b = stored.getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60


def test_more_files_than_the_limit_in_one_request_are_refused(api, settings):
    files = [SimpleUploadedFile(f"{index}.png", b"x") for index in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    client = Client()
    client.force_login(Membership.objects.get().user)
    response = client.post(reverse("api:project_items", args=["colours"]), {"image": files})
    assert response.status_code == 400
    assert not Item.objects.exists()


def test_an_upload_over_the_byte_limit_is_cut_off_while_reading(api, settings):
    settings.LOUPE_MAX_UPLOAD_BYTES = 50_000
    response = api(noisy_image((1, 2, 3), seed=8, size=(400, 400)), name="big.png")
    assert response.status_code == 400
    assert response.json() == {"error": "The file is larger than the limit of 50,000 bytes.", "filename": "big.png"}


@pytest.mark.parametrize("filename,kept", [
    ("../../../../etc/passwd.png", "passwd.png"),
    ("..\\..\\windows\\system32\\evil.png", "evil.png"),
    ("photo\u202egnp.exe", "photognp.exe"),
    ("a" * 300 + ".png", "a" * 251 + ".png"),
    ("<img src=x onerror=alert(1)>.png", "img_srcx_onerroralert1.png"),
])
def test_hostile_filenames_do_nothing(api, filename, kept):
    response = api(noisy_image((10, 200, 10), seed=9), name=filename)
    assert response.status_code == 201
    item = Item.objects.get(pk=response.json()["id"])
    assert item.original_filename == kept
    assert item.image.name.startswith(f"items/{item.project_id}/") and ".." not in item.image.name
    assert len(Path(item.image.name).stem) == 32  # a uuid, nothing of the client's


def test_a_nul_byte_in_the_name_is_harmless():
    item = intake.ingest_upload(project=make_colour_project(), data=noisy_image((9, 9, 9), seed=1),
                                  filename="a\x00b.png")
    assert "\x00" not in item.original_filename and "\x00" not in item.image.name


def test_a_failed_save_leaves_no_file_behind(settings):
    from unittest import mock

    project = make_colour_project()
    with mock.patch.object(Item, "save", side_effect=RuntimeError("database went away")), pytest.raises(RuntimeError):
        intake.ingest_upload(project=project, data=noisy_image((1, 1, 1), seed=2), filename="x.png")
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


def test_an_admin_can_send_a_rejected_image_on_anyway(api, django_capture_on_commit_callbacks):
    item = Item.objects.get(pk=api(REJECTED["black image"][0]).json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert classification.reclassify(items=[item]) == 1
    item.refresh_from_db()
    assert item.status == Item.Status.NEEDS_REVIEW and item.predictions.count() == 1


def test_originals_are_kept_only_when_the_project_asks(settings, django_capture_on_commit_callbacks):
    project = make_colour_project()
    data = noisy_image((50, 60, 70), seed=10)
    assert not intake.ingest_upload(project=project, data=data, filename="a.png").original
    project.keep_originals = True
    project.save()
    item = intake.ingest_upload(project=project, data=data, filename="a.png")
    with item.original.open("rb") as handle:
        assert handle.read() == data
    assert item.original.name.startswith(f"originals/{project.pk}/") and item.original.name.endswith(".png")
