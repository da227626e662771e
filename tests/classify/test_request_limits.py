"""Limits that act before a request body is read or an image decoded: the total request size, the
number of files, the decode memory budget; long file names explained, never a generic refusal."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from classify.models import Item
from tests.base import make_colour_project, make_user, noisy_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    user = make_user("rey")
    make_colour_project(reviewer=user)
    client = Client()
    client.force_login(user)
    return client


def items_url() -> str:
    return reverse("api:project_items", args=["colours"])


def test_a_request_over_the_total_cap_is_refused_before_it_is_read(member, settings, monkeypatch):
    settings.LOUPE_MAX_REQUEST_BYTES = 100_000
    read = []
    monkeypatch.setattr("django.core.handlers.wsgi.LimitedStream.read", lambda self, *a: read.append(a) or b"")
    response = member.post(items_url(), {"image": SimpleUploadedFile("a.png", b"x" * 150_000)})
    assert response.status_code == 413
    assert response.json() == {"error": "The request is larger than the limit of 100,000 bytes; send fewer or smaller files at once."}
    assert not read and not Item.objects.exists()


def test_a_page_request_over_the_cap_gets_a_page(member, settings):
    settings.LOUPE_MAX_REQUEST_BYTES = 2 * 2**20
    response = member.post(reverse("classify:account"), {"name": "x" * (3 * 2**20)})
    assert response.status_code == 413 and b"larger than the limit of 2 MB" in response.content


def test_the_default_caps_are_one_file_and_ten_parts(settings):
    assert settings.LOUPE_MAX_REQUEST_BYTES == settings.LOUPE_MAX_UPLOAD_BYTES + 8 * 2**20
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == 10


def test_eleven_files_in_one_request_are_refused(member):
    files = [SimpleUploadedFile(f"{n}.png", noisy_image((9, 9, 9), seed=n)) for n in range(11)]
    response = member.post(items_url(), {"image": files})
    assert response.status_code == 400 and "upload was refused" in response.json()["error"]
    assert not Item.objects.exists()


def raw_upload(client: Client, filename: bytes, data: bytes):
    body = (b'--BOUND\r\nContent-Disposition: form-data; name="image"; filename="' + filename
            + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n--BOUND--\r\n")
    return client.generic("POST", items_url(), body, content_type="multipart/form-data; boundary=BOUND")


def test_a_name_of_900_bytes_is_accepted_and_shortened(member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = raw_upload(member, b"a" * 896 + b".png", noisy_image((90, 140, 200), seed=2))
    assert response.status_code == 201
    assert Item.objects.get().original_filename == "a" * 251 + ".png"


def test_a_name_over_a_kilobyte_is_refused_with_the_reason(member):
    response = raw_upload(member, b"a" * 1500 + b".png", noisy_image((90, 140, 200), seed=2))
    assert response.status_code == 400
    assert "file name is too long" in response.json()["error"]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width×height RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_small_png_declaring_49_megapixels_is_refused_from_its_header(member):
    data = png_claiming(7000, 7000)
    assert len(data) < 100_000
    response = member.post(items_url(), {"image": SimpleUploadedFile("bomb.png", data)})
    assert response.status_code == 400
    assert "would need 280 MB of memory to decode; the limit is 256 MB" in response.json()["error"]


def test_a_large_jpeg_within_the_pixel_limit_is_reduced_not_refused(member, settings, django_capture_on_commit_callbacks):
    settings.LOUPE_DECODE_MAX_BYTES = 8 * 2**20  # 2400×1800 needs 26 MB in full: decoded at half scale
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (1800, 2400, 3), dtype="uint8")).save(
        buffer, format="JPEG", quality=80)
    with django_capture_on_commit_callbacks(execute=True):
        response = member.post(items_url(), {"image": SimpleUploadedFile("big.jpg", buffer.getvalue())})
    assert response.status_code == 201
    assert (response.json()["width"], response.json()["height"]) == (2400, 1800)
