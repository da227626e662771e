"""A request the database cannot serve for a passing reason is answered 503 with Retry-After,
never 500, and nothing of it is stored (classify.middleware.DatabaseTroubleMiddleware). The
PostgreSQL case is a real one: another session holds the item's row lock past this session's
lock_timeout, as a deadlock or a busy promotion would."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection
from django.test import Client, RequestFactory
from django.urls import reverse

from classify.middleware import DatabaseTroubleMiddleware
from reviewer import services
from reviewer.models import Decision
from tests.base import make_colour_project, make_review_item, make_user


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks held from a second session: PostgreSQL")
def test_a_decision_that_times_out_on_a_lock_is_a_503_and_stores_nothing_then_succeeds(transactional_db):
    rey = make_user("rey")
    project = make_colour_project(reviewer=rey)
    make_review_item(project, sha256="a" * 64)
    leased = services.claim_many(project=project, reviewer=rey, limit=1)[0]
    client = Client()
    client.force_login(rey)
    url, body = reverse("review_api:decision", args=[leased.lease_token]), {"labels": ["red"]}
    settings = connection.settings_dict
    other = psycopg.connect(host=settings["HOST"] or None, port=settings["PORT"] or None, user=settings["USER"],
                            dbname=settings["NAME"], password=settings["PASSWORD"] or None)
    try:
        other.execute("SELECT id FROM classify_item WHERE id = %s FOR UPDATE", [leased.pk])  # held: no commit
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 503 and response["Retry-After"] == "2"
        assert "nothing was stored" in response.json()["error"]
        assert not Decision.objects.exists()
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert client.post(url, body, content_type="application/json").status_code == 201  # trying again works
    assert Decision.objects.count() == 1


def test_a_page_gets_the_error_page_and_other_database_errors_stay_errors(db):
    middleware = DatabaseTroubleMiddleware(lambda request: None)
    request = RequestFactory().get("/projects/x/")
    request.user = make_user("ada")
    response = middleware.process_exception(request, OperationalError("deadlock detected"))
    assert response.status_code == 503 and "Try again" in response.content.decode()
    assert middleware.process_exception(request, ValueError("a bug")) is None
