"""Export to Rekognition Custom Labels: the manifest format field by field, every pre-flight rule,
the split, S3 publishing that never leaves a partial manifest, re-runs, the command and the page."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from classify import aws
from classify.models import Item, Label, Membership, Prediction
from reviewer.export import collect, runs, split
from reviewer.export import rules as export_rules
from reviewer.models import Decision, Export
from tests.base import MEDIA_BUCKET, make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db
WHEN = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
JPEG = solid_image((200, 30, 30), fmt="JPEG")
BUCKET = "loupe-export-test"
LINE_TYPE = "groundtruth/image-classification"


@pytest.fixture
def team():
    ada, rey = make_user("ada"), make_user("rey")
    project = make_colour_project(admin=ada, reviewer=rey)
    return project, ada, rey


def labelled(project, *names, reviewer=None, status="reviewed", size=(96, 80), when=WHEN, top_score=0.9, **fields):
    """An item labelled ``names`` with a real stored JPEG; with a reviewer, through a Decision."""
    labels = [project.labels.get(name=name) for name in names]
    item = Item(project=project, sha256=hashlib.sha256(str(names).encode()).hexdigest(), width=size[0],
                height=size[1], status=status, label=labels[0] if labels else None, top_score=top_score,
                labelled_at=when if status == "reviewed" else None, **fields)
    item.image.save("x.jpg", ContentFile(JPEG), save=False)
    item.save()
    if reviewer is not None:
        decide(item, reviewer, labels)
    return item


def decide(item, reviewer, labels, **fields):
    decision = Decision.objects.create(item=item, reviewer=reviewer, label=labels[0] if labels else None, **fields)
    decision.labels.set(labels)
    return decision


def build(project, tmp_path: Path, name="out", **options):
    folder = tmp_path / name
    folder.mkdir()
    options.setdefault("source_prefix", "s3://my-bucket/loupe/colours")
    paths, _work, counts, report = split.build(project, export_rules.Options(**options), folder)
    return paths, counts, report


def lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\n\n" not in text and "\r" not in text
    return [json.loads(line) for line in text.splitlines()]


def rules(report: dict) -> dict[int | None, set[str]]:
    found: dict = {}
    for problem in report["problems"] + report["dataset"]:
        found.setdefault(problem["item"], set()).add(problem["rule"])
    return found


def failure(project, tmp_path, **options) -> export_rules.ExportFailed:
    with pytest.raises(export_rules.ExportFailed) as caught:
        build(project, tmp_path, **options)
    return caught.value


def index_of(project, name: str) -> int:
    return list(project.labels.order_by("order", "pk").values_list("name", flat=True)).index(name)


class ManifestFormatTests:
    def test_a_single_label_line_matches_the_format_field_by_field(self, team, tmp_path):
        project, _, rey = team
        red = labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        paths, counts, report = build(project, tmp_path)
        first = lines(paths["train"])[0]
        assert list(first) == ["source-ref", "loupe-label-0", "loupe-label-0-metadata"]
        assert first == {
            "source-ref": f"s3://my-bucket/loupe/colours/images/{red.pk}.jpg",
            "loupe-label-0": index_of(project, "red"),
            "loupe-label-0-metadata": {
                "confidence": 1.0, "job-name": "loupe/colours", "class-name": "red", "human-annotated": "yes",
                "creation-date": "2026-11-21T10:00:00.123456", "type": LINE_TYPE,
            },
        }
        assert counts["train"] == 2 and "test" not in paths and report["problems"] == []

    def test_multi_label_lines_carry_one_generated_attribute_per_class(self, team, tmp_path):
        project, _, rey = team
        both = labelled(project, "red", reviewer=rey)
        decide(both, rey, [project.labels.get(name="red"), project.labels.get(name="blue")])
        labelled(project, "green", reviewer=rey)
        paths, *_ = build(project, tmp_path, multi_label=True)
        line = lines(paths["train"])[0]
        assert list(line) == ["source-ref", "loupe-label-0", "loupe-label-0-metadata", "loupe-label-1",
                              "loupe-label-1-metadata"]
        assert [line["loupe-label-0-metadata"]["class-name"], line["loupe-label-1-metadata"]["class-name"]] == \
            ["blue", "red"]
        assert [line["loupe-label-0"], line["loupe-label-1"]] == [index_of(project, "blue"), index_of(project, "red")]
        for n in (0, 1):
            assert line[f"loupe-label-{n}-metadata"]["type"] == LINE_TYPE
            assert line[f"loupe-label-{n}-metadata"]["human-annotated"] == "yes"

    def test_a_several_label_item_is_left_out_of_a_single_label_export_and_reported(self, team, tmp_path):
        project, _, rey = team
        both = labelled(project, "red")
        decide(both, rey, [project.labels.get(name="red"), project.labels.get(name="blue")])
        labelled(project, "green", reviewer=rey)
        labelled(project, "blue", reviewer=rey)
        paths, counts, report = build(project, tmp_path)
        assert rules(report) == {both.pk: {"single-label"}} and counts["left_out"] == 1
        assert both.pk not in {int(line["source-ref"].rsplit("/", 1)[1][:-4]) for line in lines(paths["train"])}

    def test_the_latest_live_label_decision_wins_over_item_label_and_undone_ones(self, team, tmp_path):
        project, _, rey = team
        item = labelled(project, "red")  # Item.label is red
        decide(item, rey, [project.labels.get(name="green")])
        decide(item, rey, [project.labels.get(name="blue")], undone=True)  # newest, but taken back
        labelled(project, "red", reviewer=rey)
        paths, *_ = build(project, tmp_path)
        assert lines(paths["train"])[0]["loupe-label-0-metadata"]["class-name"] == "green"

    def test_auto_accepted_items_only_when_asked_and_marked_not_human(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        auto = labelled(project, "blue", status="auto_accepted", top_score=0.8765)
        Prediction.objects.create(item=auto, backend="colour", model_version="t", scores={}, top_label="blue",
                                  top_score=0.8765, margin=0.5, latency_ms=1, thresholds={}, decision="auto_accepted",
                                  reason="t")
        Prediction.objects.filter(item=auto).update(created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
        paths, counts, _ = build(project, tmp_path)
        assert counts["exported"] == 2
        paths, counts, _ = build(project, tmp_path, name="with-auto", include_auto=True)
        meta = lines(paths["train"])[2]["loupe-label-0-metadata"]
        assert meta["human-annotated"] == "no" and meta["confidence"] == 0.8765
        assert meta["creation-date"] == "2026-01-02T03:04:05.000006"

    def test_creation_dates_are_utc(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey, when=datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
        labelled(project, "green", reviewer=rey)
        paths, *_ = build(project, tmp_path)
        assert lines(paths["train"])[0]["loupe-label-0-metadata"]["creation-date"] == "2026-06-01T10:00:00.000000"


class PreflightTests:
    """Every published rule, broken once; items are left out and listed, or the export fails."""

    def test_fewer_than_two_classes_fails_the_export_with_the_report(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        tiny = labelled(project, "green", reviewer=rey, size=(50, 80))
        failed = failure(project, tmp_path)
        assert rules(failed.report) == {None: {"label-count"}, tiny.pk: {"too-small"}}

    def test_more_than_250_classes_fails(self, tmp_path):
        manifest = tmp_path / "train.manifest"
        manifest.write_text("{}\n")
        census = collect.Census(labels=Counter({f"c{n}": 1 for n in range(251)}))
        project = make_colour_project()
        failures, _, _ = split.dataset_problems({"train": manifest}, census, project)
        assert [p.rule for p in failures] == ["label-count"]

    def test_a_class_without_images_is_reported(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, _, report = build(project, tmp_path)
        assert report["warnings"] == ["Class 'blue' has no exported image: it will not be part of the model."]

    def test_more_than_50_labels_on_one_image_is_left_out(self, team, tmp_path):
        project, _, rey = team
        many = [Label.objects.create(project=project, name=f"c{n}", order=10 + n) for n in range(51)]
        item = labelled(project, "red")
        decide(item, rey, many)
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, _, report = build(project, tmp_path, multi_label=True)
        assert rules(report) == {item.pk: {"labels-per-image"}}

    def test_a_class_name_over_256_characters_is_refused(self):
        item = SimpleNamespace(id=7)
        long = SimpleNamespace(name="x" * 257, is_unknown=False)
        assert [p.rule for p in export_rules.label_problems(item, [long], export_rules.Options())] == ["class-name"]

    def test_unknown_and_unlabelled_items_are_left_out(self, team, tmp_path):
        project, _, rey = team
        unknown = labelled(project, "unknown", reviewer=rey)
        bare = labelled(project)
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, counts, report = build(project, tmp_path)
        assert rules(report) == {unknown.pk: {"unknown-class"}, bare.pk: {"no-label"}}
        # Labelled unknown on purpose is counted apart: not a fault, so not "left out".
        assert counts["unknown"] == 1 and counts["left_out"] == 1

    def test_only_jpeg_and_png(self, team, tmp_path):
        project, _, rey = team
        gif = labelled(project, "red", reviewer=rey)
        name = default_storage.save(f"items/{project.pk}/odd.gif", ContentFile(b"GIF89a"))
        Item.objects.filter(pk=gif.pk).update(image=name)
        png = labelled(project, "red", reviewer=rey)
        name = default_storage.save(f"items/{project.pk}/fine.png", ContentFile(solid_image((1, 2, 3))))
        Item.objects.filter(pk=png.pk).update(image=name)
        labelled(project, "green", reviewer=rey)
        paths, _, report = build(project, tmp_path)
        assert rules(report) == {gif.pk: {"format"}}
        assert lines(paths["train"])[0]["source-ref"].endswith(f"/images/{png.pk}.png")

    def test_sides_below_64_px_of_the_stored_image_and_an_aspect_over_20_are_reported(self, team, tmp_path):
        project, _, rey = team
        small = labelled(project, "red", reviewer=rey, size=(63, 200))
        thin = labelled(project, "red", reviewer=rey, size=(2000, 90))  # 22:1
        shrunk = labelled(project, "red", reviewer=rey, size=(4000, 120))  # stored 2048×61
        labelled(project, "red", reviewer=rey, size=(64, 1280))  # exactly 64 px, 20:1: fine
        labelled(project, "green", reviewer=rey)
        _, counts, report = build(project, tmp_path)
        assert rules(report) == {small.pk: {"too-small"}, thin.pk: {"aspect-ratio"},
                                 shrunk.pk: {"too-small", "aspect-ratio"}}
        assert counts["exported"] == 2

    def test_sides_over_4096_px_are_reported(self, team, tmp_path, monkeypatch):
        project, _, rey = team
        huge = labelled(project, "red", reviewer=rey, size=(5000, 4000))
        assert export_rules.stored_size(5000, 4000) == (2048, 1638)  # what Loupe stores is bounded
        monkeypatch.setattr(export_rules, "stored_size", lambda width, height: (width, height))
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, _, report = build(project, tmp_path)
        assert rules(report) == {huge.pk: {"too-large"}}

    def test_files_over_15_mb_and_missing_files_are_reported(self, team, tmp_path):
        project, _, rey = team
        big = labelled(project, "red", reviewer=rey)
        name = default_storage.save(f"items/{project.pk}/big.jpg", ContentFile(JPEG + b"\0" * (15 * 1024 * 1024)))
        Item.objects.filter(pk=big.pk).update(image=name)
        gone = labelled(project, "red", reviewer=rey)
        default_storage.delete(gone.image.name)
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, _, report = build(project, tmp_path)
        assert rules(report) == {big.pk: {"file-size"}, gone.pk: {"missing-image"}}

    def test_on_s3_media_files_over_the_limit_and_missing_files_are_reported(self, s3_media, team, tmp_path,
                                                                             monkeypatch):
        project, _, rey = team
        monkeypatch.setattr(export_rules, "MAX_IMAGE_BYTES", len(JPEG))  # not a 15 MB upload to moto
        big = labelled(project, "red", reviewer=rey)
        name = default_storage.save(f"items/{project.pk}/big.jpg", ContentFile(JPEG + b"\0"))
        Item.objects.filter(pk=big.pk).update(image=name)
        gone = labelled(project, "red", reviewer=rey)
        s3_media.delete_object(Bucket=MEDIA_BUCKET, Key=f"loupe/{gone.image.name}")
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        _, counts, report = build(project, tmp_path)
        assert rules(report) == {big.pk: {"file-size"}, gone.pk: {"missing-image"}}
        assert counts["exported"] == 2

    def test_each_picture_once_a_duplicate_is_left_out(self, team, tmp_path):
        project, _, rey = team
        first = labelled(project, "red", reviewer=rey)
        again = labelled(project, "red", reviewer=rey, duplicate_of=first)
        labelled(project, "green", reviewer=rey)
        paths, _, report = build(project, tmp_path)
        assert rules(report) == {again.pk: {"duplicate"}}
        refs = [line["source-ref"] for line in lines(paths["train"])]
        assert len(refs) == len(set(refs)) == 2

    def test_all_images_in_one_bucket_named_by_an_s3_url(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        for bad in ("https://my-bucket.s3.amazonaws.com/x", "s3:///x", "my-bucket/x"):
            with pytest.raises(ValueError):
                build(project, tmp_path, name=f"bad{len(bad)}", source_prefix=bad)
        paths, *_ = build(project, tmp_path)
        assert {line["source-ref"].split("/")[2] for line in lines(paths["train"])} == {"my-bucket"}

    def test_lines_over_100000_characters_and_values_over_20000_are_refused(self):
        assert [p.rule for p in export_rules.line_problems(1, json.dumps({"source-ref": "s3://b/" + "k" * 100_000}))] \
            == ["line-length"]
        assert [p.rule for p in export_rules.line_problems(1, json.dumps({"a": "v" * 20_001}))] == ["attribute-length"]
        assert export_rules.line_problems(1, json.dumps({"a": "v" * 19_000})) == []

    def test_over_250000_lines_per_manifest_fails(self, team, tmp_path, monkeypatch):
        project, _, rey = team
        for name in ("red", "green", "blue"):
            labelled(project, name, reviewer=rey)
        monkeypatch.setattr(split, "MAX_LINES", 2)
        assert rules(failure(project, tmp_path).report) == {None: {"manifest-size"}}

    def test_fewer_than_half_the_training_classes_in_test_fails(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        for _ in range(3):
            labelled(project, "blue", reviewer=rey)
        failed = failure(project, tmp_path, test_split=0.3)
        assert rules(failed.report) == {None: {"test-coverage"}}
        assert failed.counts["test"] == 1

    def test_nothing_is_written_to_the_target_when_a_dataset_rule_fails(self, team, tmp_path):
        project, ada, rey = team
        labelled(project, "red", reviewer=rey)
        target = tmp_path / "out.zip"
        row = runs.execute_export(export=Export.objects.create(project=project, target=str(target)))
        assert row.state == "failed" and "at least 2" in row.error and not target.exists()
        assert row.report["dataset"][0]["rule"] == "label-count"


names = st.sampled_from("abcdefgh")


class SplitTests:
    @staticmethod
    def deal(items: list[list[str]], fraction: float, seed: int) -> list[bool]:
        counts = Counter(name for item in items for name in item)
        combos = Counter("\x1f".join(sorted(item)) for item in items)
        splitter = split.Splitter(counts, combos, fraction, seed)
        return [splitter.is_test(item) for item in items]

    @hypothesis_settings(max_examples=150, deadline=None)
    @given(st.lists(names, min_size=1, max_size=300), st.floats(0.05, 0.5), st.integers(0, 2**32))
    def test_single_label_splits_are_stratified_deterministic_and_cover_every_class(self, labels, fraction, seed):
        items = [[name] for name in labels]
        dealt = self.deal(items, fraction, seed)
        assert dealt == self.deal(items, fraction, seed)
        sizes = Counter(labels)
        test = Counter(name for name, is_test in zip(labels, dealt, strict=True) if is_test)
        train = Counter(name for name, is_test in zip(labels, dealt, strict=True) if not is_test)
        for name, size in sizes.items():
            assert train[name] >= 1  # every class stays in training
            assert (test[name] >= 1) == (size >= 2)  # and is in test whenever it can be
            assert test[name] == min(max(1, round(size * fraction)), size - 1) if size >= 2 else test[name] == 0

    @hypothesis_settings(max_examples=150, deadline=None)
    @given(st.lists(st.sets(names, min_size=1, max_size=4).map(sorted), min_size=1, max_size=200),
           st.floats(0.05, 0.5), st.integers(0, 2**32))
    def test_multi_label_splits_are_deterministic_and_cover_each_items_rarest_class(self, items, fraction, seed):
        dealt = self.deal(items, fraction, seed)
        assert dealt == self.deal(items, fraction, seed)
        counts = Counter(name for item in items for name in item)
        rarest = [min(item, key=lambda name: (counts[name], name)) for item in items]
        for stratum, size in Counter(rarest).items():
            test = sum(1 for r, is_test in zip(rarest, dealt, strict=True) if r == stratum and is_test)
            assert 0 < size - test  # the stratum's class keeps a training image
            assert test >= 1 if size >= 2 else test == 0

    def test_at_most_1000_test_images_per_class(self):
        items = [["a"]] * 3000 + [["b", "a"]] * 1500 + [["b"]] * 10
        dealt = self.deal(items, 0.5, 1)
        test = Counter(name for item, is_test in zip(items, dealt, strict=True) if is_test for name in item)
        assert test["a"] == 1000 and 0 < test["b"] <= 1000

    def test_the_seed_changes_the_split_but_not_its_proportions(self):
        items = [["a"]] * 50 + [["b"]] * 30
        one, two = self.deal(items, 0.2, 1), self.deal(items, 0.2, 2)
        assert one != two and sum(one) == sum(two) == 16

    def test_an_exported_split_has_no_image_in_both_sets(self, team, tmp_path):
        project, _, rey = team
        for n in range(30):
            labelled(project, ("red", "green", "blue")[n % 3], reviewer=rey)
        paths, counts, _ = build(project, tmp_path, test_split=0.2, seed=5)
        train = {line["source-ref"] for line in lines(paths["train"])}
        test = {line["source-ref"] for line in lines(paths["test"])}
        assert not train & test and len(train | test) == 30 and counts["test"] == 6
        assert set(counts["labels"]) == {"red", "green", "blue"}
        assert all(row == {"train": 8, "test": 2} for row in counts["labels"].values())


class RerunTests:
    def test_a_re_run_over_the_same_data_is_byte_identical(self, team, tmp_path):
        project, _, rey = team
        for n in range(12):
            labelled(project, ("red", "green", "blue")[n % 3], reviewer=rey)
        first, *_ = build(project, tmp_path, name="one", test_split=0.25, seed=9)
        other = make_colour_project("other")  # unrelated rows in between change nothing
        labelled(other, "red")
        second, *_ = build(project, tmp_path, name="two", test_split=0.25, seed=9)
        for name in ("train", "test"):
            assert first[name].read_bytes() == second[name].read_bytes()
            assert first[name].read_bytes()

    def test_a_re_run_of_a_zip_export_is_byte_identical(self, team, tmp_path):
        project, _, rey = team
        for n in range(6):
            labelled(project, ("red", "green", "blue")[n % 3], reviewer=rey)
        options = export_rules.Options(test_split=0.3, source_prefix="s3://b/p").as_dict()
        zips = []
        for name in ("one.zip", "two.zip"):
            row = runs.execute_export(export=Export.objects.create(project=project, target=str(tmp_path / name),
                                                                   options=options))
            assert row.state == "done", row.error
            zips.append((tmp_path / name).read_bytes())
        assert zips[0] == zips[1]


@pytest.fixture
def s3(moto_s3, settings):
    settings.LOUPE_S3_ROOTS = [f"s3://{BUCKET}/loupe"]  # project colours may use s3://BUCKET/loupe/colours/
    moto_s3.create_bucket(Bucket=BUCKET)
    return aws.client("s3")  # the export's own client: tests patch its class


def keys(client, prefix="") -> set[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {entry["Key"] for entry in listing.get("Contents", [])}


def s3_export(project, prefix="loupe/colours", **options) -> Export:
    row = Export.objects.create(project=project, target=f"s3://{BUCKET}/{prefix}",
                                options=export_rules.Options(**options).as_dict())
    return runs.execute_export(export=row)


class S3TargetTests:
    def test_images_and_manifests_land_under_the_prefix_in_one_bucket(self, team, s3):
        project, _, rey = team
        items = [labelled(project, ("red", "green", "blue")[n % 3], reviewer=rey) for n in range(9)]
        row = s3_export(project, test_split=0.34)
        assert row.state == "done", row.error
        assert keys(s3) == {"loupe/colours/train.manifest", "loupe/colours/test.manifest",
                            *(f"loupe/colours/images/{item.pk}.jpg" for item in items)}
        body = s3.get_object(Bucket=BUCKET, Key="loupe/colours/train.manifest")["Body"].read().decode()
        for line in body.splitlines():
            ref = json.loads(line)["source-ref"]
            assert ref.startswith(f"s3://{BUCKET}/loupe/colours/images/")
            assert s3.get_object(Bucket=BUCKET, Key=ref.split("/", 3)[3])["Body"].read() == JPEG
        assert row.counts["published"] == [f"s3://{BUCKET}/loupe/colours/train.manifest",
                                           f"s3://{BUCKET}/loupe/colours/test.manifest"]

    def test_a_crash_while_publishing_leaves_no_manifest_at_the_final_key(self, team, s3):
        project, _, rey = team
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        with mock.patch.object(type(s3), "copy_object", side_effect=RuntimeError("worker died")):
            row = s3_export(project, test_split=0.5)
        assert row.state == "failed" and "worker died" in row.error
        assert not {key for key in keys(s3) if "manifest" in key}  # neither final nor temporary

    def test_a_crash_while_copying_images_leaves_no_manifest(self, team, s3):
        project, _, rey = team
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        real = type(s3).put_object
        calls = []

        def flaky(self, **kwargs):
            calls.append(kwargs["Key"])
            if len(calls) == 3:
                raise RuntimeError("connection reset")
            return real(self, **kwargs)

        with mock.patch.object(type(s3), "put_object", flaky):
            row = s3_export(project)
        assert row.state == "failed" and not {key for key in keys(s3) if "manifest" in key}

    def test_a_crashed_re_run_keeps_the_previous_complete_manifest(self, team, s3):
        project, _, rey = team
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        assert s3_export(project).state == "done"
        before = s3.get_object(Bucket=BUCKET, Key="loupe/colours/train.manifest")["Body"].read()
        labelled(project, "blue", reviewer=rey)
        with mock.patch.object(type(s3), "copy_object", side_effect=RuntimeError("worker died")):
            assert s3_export(project).state == "failed"
        assert s3.get_object(Bucket=BUCKET, Key="loupe/colours/train.manifest")["Body"].read() == before
        assert {key for key in keys(s3) if "manifest" in key} == {"loupe/colours/train.manifest"}


class CommandTests:
    def test_it_writes_a_zip_of_manifests_and_images_pointing_at_the_given_prefix(self, team, tmp_path):
        project, _, rey = team
        items = [labelled(project, ("red", "green")[n % 2], reviewer=rey) for n in range(6)]
        out, err = io.StringIO(), io.StringIO()
        call_command("export_manifest", "--project", "colours", "--out", str(tmp_path / "x.zip"), "--test-split",
                     "0.34", "--seed", "3", "--s3-prefix", "s3://mine/data", stdout=out, stderr=err)
        assert "6 of 6 items (train 4, test 2); 0 left out" in out.getvalue()
        with zipfile.ZipFile(tmp_path / "x.zip") as archive:
            assert set(archive.namelist()) == {"train.manifest", "test.manifest", "export-report.json",
                                               *(f"images/{item.pk}.jpg" for item in items)}
            ref = json.loads(archive.read("test.manifest").splitlines()[0])["source-ref"]
            assert ref.startswith("s3://mine/data/images/")
            assert archive.read(ref.removeprefix("s3://mine/data/")) == JPEG
        row = Export.objects.get()
        assert row.state == "done" and row.created_by is None and row.options["seed"] == 3

    def test_the_default_prefix_is_a_placeholder_bucket(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        labelled(project, "green", reviewer=rey)
        call_command("export_manifest", "--project", "colours", "--out", str(tmp_path), stdout=io.StringIO())
        row = Export.objects.get()
        with zipfile.ZipFile(tmp_path / f"loupe-colours-export-{row.pk}.zip") as archive:
            assert archive.read("train.manifest").startswith(b'{"source-ref": "s3://YOUR-BUCKET/loupe/colours/images/')

    def test_it_lists_left_out_items_and_fails_on_a_broken_dataset(self, team, tmp_path):
        project, _, rey = team
        labelled(project, "red", reviewer=rey)
        tiny = labelled(project, "green", reviewer=rey, size=(10, 10))
        err = io.StringIO()
        with pytest.raises(CommandError, match="at least 2"):
            call_command("export_manifest", "--project", "colours", "--out", str(tmp_path / "x.zip"),
                         stdout=io.StringIO(), stderr=err)
        assert f"left out item #{tiny.pk}: too-small" in err.getvalue()
        assert not (tmp_path / "x.zip").exists()

    def test_it_refuses_bad_arguments(self, team, tmp_path):
        with pytest.raises(CommandError, match="no project"):
            call_command("export_manifest", "--project", "nope", "--out", str(tmp_path))
        with pytest.raises(CommandError, match="must look like s3://bucket/prefix"):
            call_command("export_manifest", "--project", "colours", "--out", str(tmp_path), "--s3-prefix", "https://x/y")


class ExportPageTests:
    def test_an_admin_exports_a_download_and_sees_the_history(self, team, django_capture_on_commit_callbacks):
        project, ada, rey = team
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        small = labelled(project, "red", reviewer=rey, size=(30, 30))
        client = Client()
        client.force_login(ada)
        url = reverse("reviewer:export", args=[project.slug])
        assert client.get(url).status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, {"destination": "download", "s3_url": "", "test_split": "0.5", "seed": "1"})
        assert response.status_code == 302
        row = Export.objects.get()
        assert row.state == "done" and row.created_by == ada and row.counts["test"] == 2
        page = client.get(url).content.decode()
        assert f"Export #{row.pk} · Done" in page and "by ada" in page and f"#{small.pk}" in page
        assert "too-small" in page and "4 of 5 items exported" in page
        download = client.get(reverse("reviewer:export_download", args=[project.slug, row.pk]))
        assert download.status_code == 200
        assert download["Content-Disposition"] == f'attachment; filename="loupe-colours-export-{row.pk}.zip"'
        assert download["Content-Type"] == "application/zip" and download["X-Content-Type-Options"] == "nosniff"
        assert download["Cache-Control"] == "private, no-store"
        with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
            assert {"train.manifest", "test.manifest", "export-report.json"} <= set(archive.namelist())

    def test_items_labelled_unknown_are_not_exported_by_design_not_left_out(self, team, django_capture_on_commit_callbacks):
        project, ada, rey = team
        for n in range(4):
            labelled(project, ("red", "green")[n % 2], reviewer=rey)
        other = labelled(project, "unknown", reviewer=rey)
        client = Client()
        client.force_login(ada)
        url = reverse("reviewer:export", args=[project.slug])
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url, {"destination": "download", "s3_url": "", "test_split": "0.5", "seed": "1"})
        page = client.get(url).content.decode()
        assert ("4 of 5 items exported: 2 train, 2 test; 1 labelled unknown/other, not exported (not a class to train "
                "on); none left out.") in page
        assert '1 item labelled unknown/other (not exported)</summary>' in page and f"#{other.pk}</a>" in page
        assert "left out: " not in page  # no rule-breaking items to list

    def test_the_form_refuses_a_bad_s3_location(self, team):
        project, ada, _ = team
        client = Client()
        client.force_login(ada)
        response = client.post(reverse("reviewer:export", args=[project.slug]),
                               {"destination": "s3", "s3_url": "https://bucket/x", "test_split": "0.2", "seed": "0"})
        assert response.status_code == 200 and "must look like s3://bucket/prefix" in response.content.decode()
        assert not Export.objects.exists()

    def test_only_project_admins_and_only_their_projects(self, team, tmp_path):
        project, ada, rey = team
        otto = make_user("otto")
        other = make_colour_project("other", admin=otto)
        mine = Export.objects.create(project=project, target="download", state="done", file="exports/x.zip")
        theirs = Export.objects.create(project=other, target="download", state="done", file="exports/y.zip")
        client = Client()
        client.force_login(rey)  # a reviewer of the project, not an admin
        assert client.get(reverse("reviewer:export", args=[project.slug])).status_code == 403
        assert client.get(reverse("reviewer:export_download", args=[project.slug, mine.pk])).status_code == 403
        client.force_login(otto)  # an admin elsewhere
        assert client.get(reverse("reviewer:export", args=[project.slug])).status_code == 404
        assert client.get(reverse("reviewer:export_download", args=[project.slug, mine.pk])).status_code == 404
        client.force_login(ada)  # an admin here, asking for another project's export
        assert client.get(reverse("reviewer:export_download", args=[project.slug, theirs.pk])).status_code == 404
        assert client.get(reverse("reviewer:export_download", args=[other.slug, theirs.pk])).status_code == 404
        Membership.objects.filter(project=project, user=rey).update(role="admin")
        client.force_login(rey)
        assert client.get(reverse("reviewer:export", args=[project.slug])).status_code == 200
        client.logout()
        assert client.get(reverse("reviewer:export", args=[project.slug])).status_code == 302  # to the login page


@pytest.mark.django_db
def test_an_export_whose_worker_died_is_failed_by_the_sweeper():
    from datetime import timedelta

    from django.utils import timezone

    from reviewer.models import Export
    from reviewer.tasks import sweep_exports as sweep_exports_task
    from tests.base import make_colour_project

    project = make_colour_project()
    stuck = Export.objects.create(project=project, target="download", state=Export.State.RUNNING)
    fresh = Export.objects.create(project=project, target="download", state=Export.State.RUNNING)
    Export.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert sweep_exports_task() == 1
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert stuck.state == Export.State.FAILED and "did not finish" in stuck.error
    assert fresh.state == Export.State.RUNNING
