"""An API token's last-used time: kept to the minute, without a write on every request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from classify.auth import issue_token
from classify.models import ApiToken
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db


def writes_to_tokens(queries) -> int:
    return sum(1 for query in queries if query["sql"].startswith("UPDATE") and ApiToken._meta.db_table in query["sql"])


class TokenLastUsedTests:
    def test_it_is_written_on_first_use_and_then_at_most_once_a_minute(self):
        reviewer = make_user("rey")
        project = make_colour_project(reviewer=reviewer)
        item = make_review_item(project)
        client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(reviewer)}")
        url = reverse("api:item_detail", args=[item.pk])
        token = ApiToken.objects.get(user=reviewer)
        assert token.last_used_at is None

        with CaptureQueriesContext(connection) as first:
            assert client.get(url).status_code == 200
        token.refresh_from_db()
        assert writes_to_tokens(first.captured_queries) == 1 and token.last_used_at is not None

        with CaptureQueriesContext(connection) as again:
            for _ in range(3):
                assert client.get(url).status_code == 200
        assert writes_to_tokens(again.captured_queries) == 0

        a_minute_ago = timezone.now() - timedelta(minutes=1, seconds=1)
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=a_minute_ago)
        with CaptureQueriesContext(connection) as later:
            assert client.get(url).status_code == 200
        token.refresh_from_db()
        assert writes_to_tokens(later.captured_queries) == 1 and token.last_used_at > a_minute_ago
