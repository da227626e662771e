"""The review API in O(1) of the backlog: a fixed number of SQL statements per claim and per
decision, however many items wait, and backlog counts the database keeps exact."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from classify.auth import issue_token
from classify.models import BacklogCount, Event, Item, Prediction
from config.celery import app as celery_app
from reviewer.selectors import remaining
from reviewer.services import claim_many, record_decision, undo_last
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 8
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


class max_statements(CaptureQueriesContext):
    """At most ``limit`` SQL statements, transaction control aside (a test runs inside a
    transaction, so the service's own BEGIN/COMMIT show up here as savepoints)."""

    def __init__(self, limit: int) -> None:
        super().__init__(connection)
        self.limit = limit
        connection.features.supports_json_field  # noqa: B018  Django's one-off probe on SQLite, not the review's

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        statements = [q["sql"] for q in self.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
        assert len(statements) <= self.limit, "\n\n".join(statements)

    def __len__(self) -> int:
        return sum(1 for q in self.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL))


def scores(**given: float) -> dict[str, float]:
    base = {"red": 0.0, "green": 0.0, "blue": 0.0, "unknown": 0.0}
    base.update(given)
    base["unknown"] = round(1 - sum(v for k, v in base.items() if k != "unknown"), 6)
    return base


@pytest.fixture
def queue():
    rey = make_user("rey")
    project = make_colour_project(reviewer=rey)
    client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(rey)}")
    return project, rey, client


def fill(project, n: int) -> None:
    for index in range(n):
        make_review_item(project, scores(red=0.5 + index % 5 / 100, green=0.2), sha256=f"{index:064x}")


def claim(client, project, count: int = 1):
    return client.post(reverse("review_api:claim", args=[project.slug]) + f"?count={count}")


class StatementCountTests:
    def test_a_claim_runs_a_fixed_handful_of_statements_whatever_the_backlog_and_prefetch(self, queue):
        project, _, client = queue
        fill(project, 4)
        claim(client, project)  # first use of the token, classes' exemplars: as in a session
        with max_statements(MAX_STATEMENTS) as small:
            assert claim(client, project).status_code == 200
        fill(project, 40)
        with max_statements(MAX_STATEMENTS):
            assert claim(client, project).status_code == 200
        with max_statements(MAX_STATEMENTS) as prefetch:
            body = claim(client, project, count=3).json()
        assert len(body["claims"]) == 3 and body["remaining"] == 44
        assert len(prefetch) == len(small)

    def test_a_decision_runs_a_fixed_handful_of_statements_its_event_and_after_commit_work_included(
            self, queue, django_capture_on_commit_callbacks):
        project, _, client = queue
        fill(project, 30)
        celery_app.conf.task_always_eager = False  # after commit, the request only publishes messages
        try:
            for _ in range(2):
                token = claim(client, project).json()["lease"]["token"]
                with max_statements(MAX_STATEMENTS), django_capture_on_commit_callbacks(execute=True):
                    answer = client.post(reverse("review_api:decision", args=[token]), {"labels": ["red"]},
                                         content_type="application/json")
                assert answer.status_code == 201 and answer.json()["status"] == "reviewed"
        finally:
            celery_app.conf.task_always_eager = True
        assert answer.json()["remaining"] == 28 and answer.json()["pace_today"] == 2
        # The item.settled events were written in those statements; their deliveries are the worker's.
        settled = Event.objects.filter(type=Event.Type.ITEM_SETTLED)
        assert settled.count() == 2 and not settled.filter(dispatched_at__isnull=False).exists()
        event = settled.latest("created_at").data["item"]
        assert (event["status"], event["labels"], event["settled_by"]) == ("reviewed", ["red"], "rey")
        assert event["scores"] == Prediction.objects.get(item_id=event["id"]).scores and event["model"]["version"] == "test"
        assert event["settled_at"] == Item.objects.get(pk=event["id"]).updated_at.isoformat()

    def test_a_grid_claim_runs_a_fixed_handful_of_statements_for_a_whole_page(self, queue):
        project, _, client = queue
        fill(project, 30)
        url = reverse("review_api:grid_claim", args=[project.slug])
        claim(client, project)  # first use of the token, classes' exemplars: as in a session
        with max_statements(MAX_STATEMENTS):
            body = client.post(url).json()
        assert body["label"] == "red" and len(body["claims"]) == project.grid_size and body["remaining"] == 30


def actual_counts(project) -> dict:
    rows = (Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).order_by()
            .values_list("top_label", "escalated").annotate(n=Count("pk")))
    return {(label, escalated): n for label, escalated, n in rows}


def kept_counts(project) -> dict:
    rows = BacklogCount.objects.filter(project=project, n__gt=0).values_list("top_label", "escalated", "n")
    return {(label, escalated): n for label, escalated, n in rows}


class BacklogCountTests:
    def test_the_counts_follow_every_way_an_item_enters_or_leaves_review(self, queue):
        project, rey, _ = queue
        admin = make_user("ada")
        fill(project, 6)
        make_review_item(project, scores(green=0.9), sha256="e" * 64)
        assert kept_counts(project) == actual_counts(project) == {("red", False): 6, ("green", False): 1}

        item = claim_many(project=project, reviewer=rey, limit=1)[0]
        record_decision(token=str(item.lease_token), reviewer=rey, labels=[project.labels.get(name="red")])
        assert kept_counts(project) == actual_counts(project) == {("red", False): 5, ("green", False): 1}

        undo_last(project=project, reviewer=rey)
        assert kept_counts(project) == {("red", False): 6, ("green", False): 1}

        Item.objects.filter(top_label="green").update(escalated=True)  # a bulk update, not a service
        Item.objects.filter(pk=item.pk).update(top_label="blue")
        assert kept_counts(project) == actual_counts(project) == {
            ("red", False): 5, ("blue", False): 1, ("green", True): 1}

        Item.objects.filter(project=project, top_label="red").first().delete()
        Item.objects.filter(project=project, top_label="red").update(status=Item.Status.QUEUED)
        assert kept_counts(project) == actual_counts(project) == {("blue", False): 1, ("green", True): 1}

        project.memberships.create(user=admin, role="admin")
        assert remaining(project, rey) == 1 and remaining(project, admin) == 2  # escalated: admins only


class QueueOrderIndexTests:
    """Each review order's claim walks an index in that order from the front: never a sort of
    every waiting item (600 ms per claim at 100k waiting for the learning order without its
    index). The planner is told sorting is off, so it sorts only when no index gives the order."""

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan of PostgreSQL's SKIP LOCKED claim")
    @pytest.mark.parametrize("order", ["learning", "margin"])
    def test_the_claim_reads_its_order_from_an_index_not_a_sort(self, queue, order):
        project, rey, _ = queue
        project.review_order = order
        project.save(update_fields=["review_order"])
        fill(project, 3)
        with CaptureQueriesContext(connection) as captured:
            claim_many(project=project, reviewer=rey, limit=1)
        sql = next(q["sql"] for q in captured.captured_queries if "SKIP LOCKED" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Sort" not in plan and "item_review_queue_" in plan, plan
