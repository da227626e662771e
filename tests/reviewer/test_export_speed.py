"""What keeps an export at disk speed without changing a byte: the manifest lines joined from
pre-encoded pieces are ``manifest_line``'s, the database answers a fixed number of queries
whatever the number of items, and stored files are sized with one stat each (on S3 media, one
listing per 1,000 images)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from django.core.exceptions import SuspiciousFileOperation, SuspiciousOperation
from django.core.files.storage import storages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from reviewer.export import collect, runs, split
from reviewer.export import rules as export_rules
from reviewer.models import Export
from tests.base import MEDIA_BUCKET
from tests.reviewer.test_export import labelled, team  # noqa: F401  (fixtures)

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]))


class ManifestLinesTests:
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(item_id=st.integers(1, 10**12), extension=st.sampled_from([".jpg", ".jpeg", ".png", ".gif", ""]),
           classes=st.lists(st.tuples(st.integers(0, 300), names), min_size=1, max_size=4), human=st.booleans(),
           confidence=st.one_of(st.floats(0, 1), st.just(1.0), st.floats(allow_nan=True)), created=moments,
           url=st.sampled_from(["s3://b/images/", "s3://bucket/a \"quoted\"/ü/images/"]), job=names)
    def test_a_joined_line_is_byte_for_byte_the_encoded_one(self, item_id, extension, classes, human, confidence,
                                                            created, url, job):
        lines = export_rules.ManifestLines(images_url=url, job_name=job)
        joined = lines.line(item_id=item_id, extension=extension, classes=tuple(classes), human=human,
                            confidence=confidence, created=created)
        encoded = export_rules.manifest_line(source_ref=f"{url}{item_id}{extension}", classes=classes, human=human,
                                             confidence=confidence, created=created, job_name=job)
        assert joined == encoded
        assert lines.line(item_id=item_id, extension=extension, classes=tuple(classes), human=human,
                          confidence=confidence, created=created) == encoded  # from the remembered pieces

    def test_the_date_is_utc_with_microseconds_whatever_the_zone(self):
        moment = datetime(2026, 11, 21, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        assert export_rules.utc_iso(moment) == "2026-11-21T10:00:00.000000"
        assert export_rules.utc_iso(moment.astimezone(UTC)) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@pytest.mark.django_db
class CostTests:
    def statements(self, project, tmp_path: Path, name: str) -> tuple[int, dict]:
        folder = tmp_path / name
        folder.mkdir()
        options = export_rules.Options(test_split=0.2, source_prefix="s3://b/p")
        with CaptureQueriesContext(connection) as captured:
            _paths, _work, counts, _report = split.build(project, options, folder)
        return len(captured.captured_queries), counts

    def test_the_queries_do_not_grow_with_the_number_of_items(self, team, tmp_path, monkeypatch):  # noqa: F811
        project, _, rey = team
        monkeypatch.setattr(collect, "CHUNK", 3)
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        few, counts = self.statements(project, tmp_path, "few")
        assert counts["exported"] == 4
        for n in range(20):
            labelled(project, ("red", "green", "blue")[n % 3], reviewer=rey, top_score=0.5 + n / 100)
        many, counts = self.statements(project, tmp_path, "many")
        assert counts["exported"] == 24 and many == few

    def test_the_finished_row_says_every_item_was_examined(self, team, tmp_path):  # noqa: F811
        project, _, rey = team
        for n in range(5):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        row = runs.execute_export(export=Export.objects.create(
            project=project, target=str(tmp_path / "out.zip"),
            options=export_rules.Options(source_prefix="s3://b/p").as_dict()))
        assert row.state == "done" and row.progress == row.counts["examined"] == 5


@pytest.mark.django_db
class StoredSizesTests:
    def test_a_stat_gives_the_storage_s_answer_and_a_missing_file_is_an_os_error(self, team):  # noqa: F811
        project, _, _ = team
        item = labelled(project, "red")
        size_of = export_rules.stored_sizes()
        from django.core.files.storage import default_storage

        assert size_of(item.image.name) == default_storage.size(item.image.name) > 0
        with pytest.raises(OSError):
            size_of("items/nothing-here.jpg")

    def test_a_name_that_climbs_out_of_the_media_folder_is_refused_as_the_storage_refuses_it(self):
        with pytest.raises(SuspiciousFileOperation):
            export_rules.stored_sizes()("items/../../etc/passwd")

    def test_a_work_line_keeps_a_stored_name_with_tabs_and_newlines(self, tmp_path):
        census = collect.Census(classes=[("red",)])
        path = tmp_path / "work.jsonl"
        with path.open("w+", encoding="utf-8", newline="\n") as work:
            name = export_rules.encode_json("odd\tname\n.jpg")
            work.write("7\t.jpg\t0\t" + name + '\t{"source-ref": "x"}\n')
            (item_id, name, extension, number, line), = collect.read_work(work)
        assert (item_id, json.loads(name), extension, census.classes[number], line) == (
            "7", "odd\tname\n.jpg", ".jpg", ("red",), '{"source-ref": "x"}')


def s3_calls() -> Counter:
    """The S3 operations the media storage's client sends from now on, by name (moto answers them)."""
    seen: Counter = Counter()
    client = storages["default"].connection.meta.client
    client.meta.events.register("before-call.s3", lambda model, **kwargs: seen.update([model.name]))
    return seen


@pytest.mark.django_db
class ListedSizesTests:
    def test_an_export_s_pre_flight_lists_the_images_folder_instead_of_a_head_per_image(
            self, s3_media, team, tmp_path):  # noqa: F811
        project, _, rey = team
        for n in range(6):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        calls = s3_calls()
        folder = tmp_path / "out"
        folder.mkdir()
        _, _, counts, report = split.build(project, export_rules.Options(source_prefix="s3://b/p"), folder)
        assert counts["exported"] == 6 and report["problems"] == []
        assert calls == {"ListObjectsV2": 1}

    def test_2001_images_are_three_listings_of_their_folder_under_the_storage_s_location(self, s3_media):
        for n in range(2001):
            s3_media.put_object(Bucket=MEDIA_BUCKET, Key=f"loupe/items/7/{n}.jpg", Body=b"x" * (n % 5))
        s3_media.put_object(Bucket=MEDIA_BUCKET, Key="loupe/items/7/sub/0.jpg", Body=b"xyz")
        s3_media.put_object(Bucket=MEDIA_BUCKET, Key="items/7/elsewhere.jpg", Body=b"x")  # outside the location
        calls = s3_calls()
        size_of = export_rules.stored_sizes()
        assert [size_of(f"items/7/{n}.jpg") for n in range(2001)] == [n % 5 for n in range(2001)]
        for missing in ("items/7/2001.jpg", "items/7/elsewhere.jpg", "items/7/sub"):
            with pytest.raises(OSError):
                size_of(missing)
        assert calls == {"ListObjectsV2": 3}  # 1,000 keys a page; the subfolder is not in them
        assert size_of("items/7/sub/0.jpg") == 3 and size_of("items/7/./sub/0.jpg") == 3
        assert calls == {"ListObjectsV2": 4}  # each folder once
        with pytest.raises(SuspiciousOperation):  # as S3Storage.size refuses it
            size_of("items/../../etc/passwd")

    def test_where_listing_is_refused_each_image_is_sized_with_a_head_and_the_log_says_why(self, s3_media, caplog):
        size_of = export_rules.stored_sizes()
        with Stubber(storages["default"].connection.meta.client) as stub:
            stub.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)
            stub.add_response("head_object", {"ContentLength": 123}, {"Bucket": MEDIA_BUCKET, "Key": "loupe/items/7/a.jpg"})
            stub.add_response("head_object", {"ContentLength": 45}, {"Bucket": MEDIA_BUCKET, "Key": "loupe/items/7/b.jpg"})
            assert size_of("items/7/a.jpg") == 123 and size_of("items/7/b.jpg") == 45
            stub.assert_no_pending_responses()
        assert "s3:ListBucket" in caplog.text

    def test_without_list_rights_a_missing_image_s_403_is_a_reported_problem_not_a_failed_export(
            self, s3_media):
        """Without s3:ListBucket, S3 answers a HEAD of a missing key with 403 (not 404), which the
        storage lets through as a ClientError: the pre-flight reports it like a missing file."""
        size_of = export_rules.stored_sizes()
        with Stubber(storages["default"].connection.meta.client) as stub:
            stub.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)
            stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
            problems = export_rules.file_problems(SimpleNamespace(id=7, image="items/7/gone.jpg"), size_of)
            assert [(p.item, p.rule) for p in problems] == [(7, "missing-image")]
            assert "S3 refused it" in problems[0].message
            stub.add_client_error("head_object", service_error_code="InternalError", http_status_code=500)
            with pytest.raises(ClientError):  # anything else still surfaces
                size_of("items/7/other.jpg")
