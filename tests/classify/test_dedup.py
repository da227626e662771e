"""The same picture is never classified twice."""

from __future__ import annotations

import random
from unittest import mock

import pytest

from classify import images
from classify.models import Item, Prediction
from classify.services import intake
from tests.base import make_colour_project, noisy_image
from tests.colour_backend import ColourBackend

pytestmark = pytest.mark.django_db


def upload_all(project, files, capture) -> list[Item]:
    with capture(execute=True):
        items = [intake.ingest_upload(project=project, data=data, filename=f"{n}.png") for n, data in enumerate(files)]
    return list(Item.objects.filter(pk__in=[item.pk for item in items]).order_by("pk"))


def test_re_uploading_100_images_makes_no_backend_call(django_capture_on_commit_callbacks):
    project = make_colour_project()
    files = [noisy_image((n * 2, 255 - n * 2, 90), seed=n) for n in range(100)]
    spy = mock.patch.object(ColourBackend, "classify", autospec=True, side_effect=ColourBackend.classify)
    with spy as calls:
        first = upload_all(project, files, django_capture_on_commit_callbacks)
        assert calls.call_count == 100
        second = upload_all(project, files, django_capture_on_commit_callbacks)
        assert calls.call_count == 100  # not one more
    for original, again in zip(first, second, strict=True):
        assert again.duplicate_of_id == original.pk
        assert again.status == original.status
        reused = again.predictions.get()
        assert reused.reused_from == original.predictions.get() and reused.latency_ms == 0
    assert Prediction.objects.count() == 200


def test_a_new_model_version_classifies_the_picture_again(django_capture_on_commit_callbacks):
    project = make_colour_project()
    data = noisy_image((250, 10, 10), seed=1)
    upload_all(project, [data], django_capture_on_commit_callbacks)
    with mock.patch.object(ColourBackend, "model_version", "colour-2"), \
         mock.patch.object(ColourBackend, "classify", autospec=True, side_effect=ColourBackend.classify) as calls:
        upload_all(project, [data], django_capture_on_commit_callbacks)
    assert calls.call_count == 1


def test_the_same_picture_in_another_project_is_its_own_item(django_capture_on_commit_callbacks):
    data = noisy_image((10, 10, 250), seed=2)
    one = upload_all(make_colour_project(), [data], django_capture_on_commit_callbacks)[0]
    other = upload_all(make_colour_project("other"), [data], django_capture_on_commit_callbacks)[0]
    assert other.duplicate_of is None and other.predictions.get().reused_from is None
    assert one.sha256 == other.sha256


def test_a_near_duplicate_is_flagged(django_capture_on_commit_callbacks):
    from io import BytesIO

    from PIL import Image

    from tests.base import photo_bytes

    project = make_colour_project()
    original = photo_bytes("chelsea")
    recompressed = BytesIO()
    Image.open(BytesIO(original)).resize((400, 266)).save(recompressed, format="JPEG", quality=60)
    first, second = upload_all(project, [original, recompressed.getvalue()], django_capture_on_commit_callbacks)
    assert second.duplicate_of is None and second.near_duplicate_of == first
    unrelated = upload_all(project, [photo_bytes("coffee")], django_capture_on_commit_callbacks)[0]
    assert unrelated.near_duplicate_of is None


def hashed_items(project, hashes) -> list[Item]:
    """Items with these perceptual hashes, inserted directly (the lookup reads only the hash)."""
    rows = [Item(project=project, sha256=f"{n:064x}", phash=value, width=8, height=8, image=f"items/x/{n}.jpg")
            for n, value in enumerate(hashes)]
    return Item.objects.bulk_create(rows, batch_size=500)


def flipped(value: int, bits) -> int:
    """``value`` (a signed 64-bit hash) with these bit positions inverted."""
    unsigned = value & ((1 << 64) - 1)
    for bit in bits:
        unsigned ^= 1 << bit
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


class NearDuplicateLookupTests:
    def test_the_database_cuts_each_hash_into_the_bands_the_lookup_asks_for(self):
        values = [0, -1, 1, -(1 << 63), (1 << 63) - 1, 0x0123456789ABCDEF, -0x0123456789ABCDEF]
        hashed_items(make_colour_project(), values)
        columns = [f"phash_band{index}" for index in range(len(images.PHASH_BANDS))]
        for value, *bands in Item.objects.values_list("phash", *columns):
            assert tuple(bands) == images.phash_bands(value)

    def test_an_old_near_duplicate_is_found_behind_thousands_of_newer_items(self):
        """Four differing bits anywhere, one in each of four bands or all in one: always found,
        however many items came after (the lookup used to read only the last 5,000)."""
        project = make_colour_project()
        rng = random.Random(7)
        target = rng.getrandbits(64) - (1 << 63)
        old = hashed_items(project, [target])[0]
        hashed_items(project, [rng.getrandbits(64) - (1 << 63) for _ in range(5001)])
        starts = [shift for shift, _width in images.PHASH_BANDS]
        spread = [start + rng.randrange(13) for start in starts[:4]]
        for bits in (spread, [1, 2, 3, 4], [60, 61, 62, 63], rng.sample(range(64), 4)):
            found = intake.find_near_duplicate(project, flipped(target, bits))
            assert found == old, bits

    def test_five_differing_bits_are_not_a_near_duplicate_and_the_latest_match_is_named(self):
        project = make_colour_project()
        first, latest = hashed_items(project, [0, 0])
        assert intake.find_near_duplicate(project, flipped(0, [0, 13, 26, 39, 52])) is None
        assert intake.find_near_duplicate(project, flipped(0, [5, 20])) == latest != first
        assert intake.find_near_duplicate(make_colour_project("other"), 0) is None
