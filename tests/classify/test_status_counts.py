"""The counts per status the project list and the item list show: kept by the database
(``StatusCount``, triggers on the item table), exact through every way an item changes, and read
without counting the items."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext

from classify.models import Item, StatusCount
from classify.selectors import status_counts, status_counts_of
from classify.services import classification, counts, intake
from classify.services.lifecycle import mark_failed
from classify.tasks import sweep as sweep_task
from reviewer.services import claim_many, record_decision, skip, undo_last
from tests.base import make_colour_project, make_review_item, make_user, noisy_image, solid_image

pytestmark = pytest.mark.django_db


def actual(project) -> dict[str, int]:
    """The truth: a real COUNT over the item table."""
    found = dict.fromkeys(Item.Status.values, 0)
    rows = Item.objects.filter(project=project).order_by().values_list("status").annotate(n=Count("pk"))
    found.update(dict(rows))
    return found


def kept(project) -> dict[str, int]:
    return status_counts(project)


def actual_by_label(project) -> dict[tuple[str, int | None], int]:
    rows = Item.objects.filter(project=project).order_by().values_list("status", "label").annotate(n=Count("pk"))
    return {(status, label): n for status, label, n in rows}


def kept_by_label(project) -> dict[tuple[str, int | None], int]:
    rows = (StatusCount.objects.filter(project=project).order_by().values_list("status", "label")
            .annotate(total=Sum("n")))
    return {(status, label): n for status, label, n in rows if n}


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: n for status, n in counts.items() if n}


def ingest(project, data: bytes, capture, name: str = "photo.png") -> Item:
    with capture(execute=True):
        item = intake.ingest_upload(project=project, data=data, filename=name)
    item.refresh_from_db()
    return item


class StatusCountTests:
    def test_the_counts_stay_exact_through_every_state_transition(self, django_capture_on_commit_callbacks):
        rey = make_user("rey")
        project = make_colour_project(reviewer=rey)
        other = make_colour_project("other")
        capture = django_capture_on_commit_callbacks
        steps = []

        def check(step: str) -> None:
            steps.append(step)
            assert kept(project) == actual(project), step
            assert kept(other) == actual(other), step
            assert kept_by_label(project) == actual_by_label(project), step
            assert kept_by_label(other) == actual_by_label(other), step

        ingest(other, solid_image((255, 0, 0)), capture)
        check("another project's upload")
        accepted = ingest(project, solid_image((255, 0, 0)), capture)  # upload, classify, route: accepted
        assert accepted.status == Item.Status.AUTO_ACCEPTED
        check("upload auto-accepted")
        for seed in range(3):  # routed to review
            assert ingest(project, noisy_image((150, 40, 40), seed=seed), capture).status == Item.Status.NEEDS_REVIEW
        check("uploads routed to review")
        assert ingest(project, solid_image((255, 0, 0), size=(8, 8)), capture).status == Item.Status.REJECTED
        check("upload rejected by the quality checks")
        received = intake.ingest_upload(project=project, data=noisy_image((10, 10, 200), seed=9), filename="q.png")
        received.refresh_from_db()  # its classification not run yet (no on-commit callbacks)
        check(f"upload waiting as {received.status}")

        first, second = claim_many(project=project, reviewer=rey, limit=2)
        check("claim")
        record_decision(token=str(first.lease_token), reviewer=rey, labels=[project.labels.get(name="red")])
        check("decision")
        skip(token=str(second.lease_token), reviewer=rey)
        check("skip")
        undo_last(project=project, reviewer=rey)
        check("undo")
        with capture(execute=True):
            classification.reclassify(items=Item.objects.filter(pk=accepted.pk))
        check("re-classification")
        mark_failed(Item.objects.get(pk=received.pk), reason="test")
        check("failed")
        Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).update(status=Item.Status.QUEUED)
        check("a bulk update outside the services")
        Item.objects.filter(pk=accepted.pk).update(project=other)
        check("an item moved to another project")
        assert other.items.filter(label__name="red").count() == 2
        other.labels.get(name="red").delete()  # its items keep their status, without a label
        check("a class deleted")
        Item.objects.filter(project=project, status=Item.Status.QUEUED).first().delete()
        check("an item deleted")
        assert nonzero(kept(project)) and len(steps) == 15

        gone = make_colour_project("gone")  # a project without decisions (those protect their project)
        ingest(gone, solid_image((0, 0, 255)), capture)
        ingest(gone, noisy_image((150, 40, 40), seed=5), capture)
        assert nonzero(kept(gone)) == {"auto_accepted": 1, "needs_review": 1}
        gone.delete()
        assert not StatusCount.objects.filter(project_id=gone.pk).exists()
        check("another project deleted")
        assert nonzero(kept(other)) == {"auto_accepted": 2}

    def test_the_sweeper_folds_the_rows_and_keeps_the_sums(self):
        project = make_colour_project()
        for n in range(6):
            make_review_item(project, sha256=f"{n:064x}")
        for item in Item.objects.filter(project=project)[:2]:
            Item.objects.filter(pk=item.pk).update(status=Item.Status.REVIEWED)
        before = StatusCount.objects.filter(project=project).count()
        sweep_task.apply()
        assert kept(project) == actual(project)
        assert nonzero(kept(project)) == {"needs_review": 4, "reviewed": 2}
        if connection.vendor == "postgresql":  # SQLite's triggers keep one row per status already
            assert before > 2
            assert sorted(StatusCount.objects.filter(project=project).values_list("status", "n")) == [
                ("needs_review", 4), ("reviewed", 2)]
            assert counts.compact_status_counts() == 0  # nothing left to fold

    def test_several_projects_are_counted_in_one_query(self, django_assert_num_queries):
        projects = [make_colour_project(f"p{n}") for n in range(3)]
        for n, project in enumerate(projects):
            for k in range(n):
                make_review_item(project, sha256=f"{n}{k:063x}")
        with django_assert_num_queries(1):
            found = status_counts_of(projects)
        assert [found[project.pk]["needs_review"] for project in projects] == [0, 1, 2]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL")
def test_transactions_moving_items_opposite_ways_never_wait_for_each_other():
    """A worker's claim (queued -> classifying) and the sweeper giving one back (classifying ->
    queued), each uncommitted, touch the same two statuses in opposite orders: with counter rows
    updated in place one would wait for the other (or deadlock); the ledger appends."""
    project = make_colour_project()
    a = make_review_item(project, sha256="a" * 64)
    b = make_review_item(project, sha256="b" * 64)
    Item.objects.filter(pk=a.pk).update(status=Item.Status.QUEUED)
    Item.objects.filter(pk=b.pk).update(status=Item.Status.CLASSIFYING)
    settings = connection.get_connection_params()
    settings.pop("cursor_factory", None)
    settings.pop("context", None)
    with psycopg.connect(**settings) as first, psycopg.connect(**settings) as second:
        first.execute("UPDATE classify_item SET status = 'classifying' WHERE id = %s", [a.pk])
        second.execute("SET lock_timeout = '2s'")
        second.execute("UPDATE classify_item SET status = 'queued' WHERE id = %s", [b.pk])  # no wait
        second.commit()
        first.commit()
    assert kept(project) == actual(project)
    assert nonzero(kept(project)) == {"queued": 1, "classifying": 1}


class PagesReadTheKeptCountsTests:
    def test_the_project_list_and_the_item_list_never_count_the_items_per_status(self):
        admin = make_user("ada", is_staff=True)
        project = make_colour_project(admin=admin)
        for n in range(3):
            make_review_item(project, sha256=f"{n:064x}")
        client = Client()
        client.force_login(admin)
        for url in ("/", f"/projects/{project.slug}/", f"/projects/{project.slug}/?status=needs_review"):
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url)
            assert response.status_code == 200
            counting = [q["sql"] for q in captured.captured_queries  # the counts per status, from the items
                        if 'FROM "classify_item"' in q["sql"] and '"classify_item"."status" AS "status", COUNT(' in q["sql"]]
            assert not counting, counting
            assert b"Needs review" in response.content
        assert response.context["counts"]["needs_review"] == 3
