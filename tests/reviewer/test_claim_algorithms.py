"""The two claim algorithms behind ``claim_many``, each run on the database the suite runs on.

``claim_conditional`` works on any database, so it is tested on PostgreSQL too (CI) and not only
on SQLite, where ``claim_many`` uses it. ``claim_skip_locked`` needs ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from classify.models import Item, Membership, Project
from reviewer import selectors, services
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db

SKIP_LOCKED = pytest.param(
    services.claim_skip_locked, id="skip_locked",
    marks=pytest.mark.skipif(not connection.features.has_select_for_update_skip_locked,
                             reason="FOR UPDATE SKIP LOCKED needs PostgreSQL (this run uses SQLite)"),
)
ALGORITHMS = [SKIP_LOCKED, pytest.param(services.claim_conditional, id="conditional")]


@pytest.fixture
def team():
    rey, ria = make_user("rey"), make_user("ria")
    project = make_colour_project(reviewer=rey)
    Membership.objects.create(project=project, user=ria)
    # Margins 0.3, 0.2, 0.1 (the default order: smallest first); distinct content hashes.
    items = [make_review_item(project, {"red": 0.55, "green": round(0.25 + n / 10, 2), "blue": 0.0,
                                        "unknown": round(0.2 - n / 10, 2)}, sha256=str(n + 1) * 64)
             for n in range(3)]
    return project, rey, ria, items


def test_claim_many_uses_skip_locked_exactly_where_the_database_has_it(team):
    project, rey, *_ = team
    expected = "claim_skip_locked" if connection.features.has_select_for_update_skip_locked else "claim_conditional"
    with mock.patch(f"reviewer.services.{expected}", return_value=[]) as chosen:
        services.claim_many(project=project, reviewer=rey, limit=1)
    chosen.assert_called_once()


@pytest.mark.parametrize("claim", ALGORITHMS)
class ClaimAlgorithmTests:
    def test_it_leases_up_to_the_limit_in_queue_order(self, team, claim):
        project, rey, _, items = team
        claimed = claim(project=project, reviewer=rey, limit=2)
        assert [item.pk for item in claimed] == [items[2].pk, items[1].pk]  # smallest margin first
        for item in claimed:
            stored = Item.objects.get(pk=item.pk)
            assert stored.lease_owner == rey and stored.lease_token == item.lease_token
            assert stored.lease_expires_at > timezone.now()
        assert len({item.lease_token for item in claimed}) == 2

    def test_it_passes_over_what_a_colleague_holds(self, team, claim):
        project, rey, ria, items = team
        held = claim(project=project, reviewer=ria, limit=1)
        mine = claim(project=project, reviewer=rey, limit=5)
        assert {item.pk for item in mine} == {item.pk for item in items} - {held[0].pk}
        assert claim(project=project, reviewer=rey, limit=5) == []

    def test_it_honours_the_class_and_the_exclusions(self, team, claim):
        project, rey, _, items = team
        Item.objects.filter(pk=items[0].pk).update(top_label="green")
        assert [item.pk for item in claim(project=project, reviewer=rey, limit=5, top_label="green")] == [items[0].pk]
        rest = claim(project=project, reviewer=rey, limit=5, exclude=[items[1].pk])
        assert [item.pk for item in rest] == [items[2].pk]

    def test_random_order_wraps_round_past_the_last_hash(self, team, claim):
        project, rey, _, items = team
        Project.objects.filter(pk=project.pk).update(review_order="random")
        project.refresh_from_db()
        with mock.patch("reviewer.services.secrets.token_hex", return_value="f" * 64):
            assert len(claim(project=project, reviewer=rey, limit=5)) == 3


def test_conditional_claim_searches_again_when_a_candidate_was_taken_meanwhile(team):
    """The candidates are read before the conditional UPDATEs: one leased in between is passed
    over, and the next search finds another."""
    project, rey, ria, items = team
    services.claim_conditional(project=project, reviewer=ria, limit=1)  # items[2], the first in order
    real = selectors.reviewable_items
    stale = iter([Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).order_by("-pk")])

    def candidates(*args, **kwargs):
        return next(stale, None) or real(*args, **kwargs)

    with mock.patch("reviewer.services.selectors.reviewable_items", side_effect=candidates):
        claimed = services.claim_conditional(project=project, reviewer=rey, limit=1)
    assert [item.pk for item in claimed] == [items[1].pk]
    assert Item.objects.get(pk=items[2].pk).lease_owner == ria
