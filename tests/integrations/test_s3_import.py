"""Import from S3 (moto): pagination, intake checks, skips, per-object failures, crash and resume."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from classify.models import Item
from integrations import s3import
from integrations.models import ImportedObject, S3Import
from tests.base import make_colour_project, make_user, noisy_image, solid_image

pytestmark = pytest.mark.django_db
BUCKET = "team-images"


@pytest.fixture
def s3(moto_s3):
    moto_s3.create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def project():
    project = make_colour_project(admin=make_user("ada"))
    project.min_side = 0  # the tiny test images are fine
    project.save()
    return project


def tiny_png(n: int) -> bytes:
    """A distinct 16x16 picture per n (its pixels spell n)."""
    from PIL import Image

    image = Image.new("RGB", (16, 16), (n % 251, (n // 251) % 251, 120))
    image.putpixel((n % 16, (n // 16) % 16), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def put(client, key: str, data: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=data)


def run_command(*args) -> str:
    out = io.StringIO()
    call_command("import_images", *args, "--project", "colours", "--no-progress", stdout=out, stderr=out)
    return out.getvalue()


class Crash(BaseException):
    """A stand-in for the process dying (not an Exception: nothing may swallow it)."""


class CrashAndResumeTests:
    def test_2000_objects_crash_half_way_and_a_rerun_imports_every_object_once(self, project, s3, monkeypatch):
        for n in range(1900):
            put(s3, f"batch/{n:05d}.png", tiny_png(n))
        for n in range(100):  # the same pictures again under other names: duplicates by content
            put(s3, f"batch/copies/{n:05d}.png", tiny_png(n))
        put(s3, "batch/notes.txt", b"not an image, not even listed")
        real_ingest, calls = s3import.ingest_if_new, []

        def crashing_ingest(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1001:
                raise Crash("the worker died")
            return real_ingest(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(s3import, "ingest_if_new", crashing_ingest)
            with pytest.raises(Crash):
                run_command(f"s3://{BUCKET}/batch")
        job = S3Import.objects.get()
        assert 1000 - s3import.CHUNK < job.processed <= 1000 and Item.objects.count() == job.imported == job.processed
        assert job.state == S3Import.State.FAILED and "Interrupted" in job.error

        output = run_command(f"s3://{BUCKET}/batch")
        assert f"Resuming import #{job.pk}: {job.processed} object(s)" in output
        job.refresh_from_db()
        assert job.state == S3Import.State.DONE
        assert (job.listed, job.imported, job.duplicates, job.skipped, job.failed) == (2000, 1900, 100, 0, 0)
        assert Item.objects.count() == 1900
        assert ImportedObject.objects.count() == 2000
        assert ImportedObject.objects.values("key").distinct().count() == 2000
        copy = ImportedObject.objects.get(key="batch/copies/00007.png")
        assert copy.outcome == "duplicate" and copy.item == ImportedObject.objects.get(key="batch/00007.png").item
        assert "2000 listed, 1900 imported, 100 duplicate(s), 0 imported before, 0 failed" in output

        again = run_command(f"s3://{BUCKET}/batch")  # a new run over the same objects skips them all
        assert "2000 listed, 0 imported, 0 duplicate(s), 2000 imported before, 0 failed" in again
        assert Item.objects.count() == 1900


class ImportTests:
    def test_a_changed_object_is_imported_again_and_an_unchanged_one_skipped(self, project, s3):
        put(s3, "a/one.png", noisy_image((200, 10, 10), seed=1))
        put(s3, "a/two.png", noisy_image((10, 200, 10), seed=2))
        run_command(f"s3://{BUCKET}/a")
        put(s3, "a/two.png", noisy_image((10, 10, 200), seed=3))  # new content: a new ETag
        output = run_command(f"s3://{BUCKET}/a")
        assert "2 listed, 1 imported, 0 duplicate(s), 1 imported before, 0 failed" in output
        assert Item.objects.count() == 3

    def test_bad_objects_are_reported_and_the_batch_goes_on(self, project, s3, settings):
        settings.LOUPE_MAX_UPLOAD_BYTES = 5000
        put(s3, "b/1-good.png", noisy_image((200, 10, 10), seed=1, size=(24, 24)))
        put(s3, "b/2-broken.jpg", b"\xff\xd8\xff not really a jpeg")
        put(s3, "b/3-huge.png", noisy_image((10, 200, 10), seed=2, size=(200, 200)))
        put(s3, "b/4-dark.png", solid_image((0, 0, 0)))  # fails the quality checks: kept as rejected
        put(s3, "b/5-good.png", noisy_image((10, 10, 200), seed=3, size=(24, 24)))
        out = io.StringIO()
        call_command("import_images", f"s3://{BUCKET}/b", "--project", "colours", "--no-progress",
                     stdout=out, stderr=out)
        output = out.getvalue()
        assert "5 listed, 3 imported, 0 duplicate(s), 0 imported before, 2 failed" in output
        assert f"failed s3://{BUCKET}/b/2-broken.jpg" in output and f"failed s3://{BUCKET}/b/3-huge.png" in output
        assert sorted(Item.objects.values_list("status", flat=True)) == ["queued", "queued", "rejected"] or \
            sorted(Item.objects.values_list("status", flat=True)) == ["received", "received", "rejected"]
        huge = ImportedObject.objects.get(key="b/3-huge.png")
        assert "limit" in huge.reason

    def test_objects_come_through_the_same_intake_as_uploads(self, project, s3):
        put(s3, "c/photo.png", noisy_image((200, 10, 10), seed=1))
        run_command(f"s3://{BUCKET}/c")
        item = Item.objects.get()
        assert item.original_filename == "photo.png" and item.source_format == "PNG"
        assert item.image.name.endswith(".jpg") and "c/photo" not in item.image.name

    def test_a_missing_bucket_fails_the_import_with_the_reason(self, project, s3):
        with pytest.raises(CommandError, match="NoSuchBucket"):
            run_command("s3://no-such-bucket/x")
        assert S3Import.objects.get().state == S3Import.State.FAILED

    def test_a_running_import_is_not_taken_over_unless_forced(self, project, s3):
        put(s3, "d/one.png", noisy_image((200, 10, 10), seed=1))
        job = s3import.start_import(project=project, source=f"s3://{BUCKET}/d")
        s3import.claim(job.pk)  # another runner holds it (and was then killed)
        with pytest.raises(CommandError, match="--force"):
            run_command(f"s3://{BUCKET}/d")
        assert "1 imported" in run_command(f"s3://{BUCKET}/d", "--force")

    def test_pages_are_listed_one_after_the_other(self, project, s3, monkeypatch):
        monkeypatch.setattr(s3import, "PAGE_SIZE", 3)
        for n in range(8):
            put(s3, f"e/{n}.png", tiny_png(n))
        assert "8 listed, 8 imported" in run_command(f"s3://{BUCKET}/e")


def test_the_sweeper_resumes_an_import_whose_process_died(project, s3):
    from datetime import timedelta

    from django.utils import timezone

    from integrations import tasks

    for n in range(3):
        put(s3, f"f/{n}.png", tiny_png(n))
    job = s3import.start_import(project=project, source=f"s3://{BUCKET}/f")
    long_ago = timezone.now() - timedelta(minutes=10)
    S3Import.objects.filter(pk=job.pk).update(state=S3Import.State.RUNNING, heartbeat_at=long_ago, created_at=long_ago)
    tasks.sweep()  # eager in tests: the resumed import runs here
    job.refresh_from_db()
    assert (job.state, job.imported) == (S3Import.State.DONE, 3)


def test_downloads_run_in_parallel(project, s3, monkeypatch):
    import threading
    import time

    for n in range(8):
        put(s3, f"g/{n}.png", tiny_png(n))
    real_fetch, threads = s3import.fetch, set()

    def slow_fetch(*args, **kwargs):
        threads.add(threading.current_thread().name)
        time.sleep(0.05)
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(s3import, "fetch", slow_fetch)
    assert "8 imported" in run_command(f"s3://{BUCKET}/g")
    assert len(threads) > 1


def test_the_command_shows_a_progress_bar_with_the_counts(project, s3):
    for n in range(5):
        put(s3, f"h/{n}.png", tiny_png(n))
    put(s3, "h/copy.png", tiny_png(0))
    out, err = io.StringIO(), io.StringIO()
    call_command("import_images", f"s3://{BUCKET}/h", "--project", "colours", stdout=out, stderr=err)
    bar = err.getvalue()
    assert f"importing s3://{BUCKET}/h" in bar and "6/6" in bar and "new=5" in bar and "dup=1" in bar
