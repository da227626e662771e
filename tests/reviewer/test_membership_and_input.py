"""Leases follow membership: every lease operation checks that the reviewer still belongs to the
item's project, and removing a member gives their leases back at once. Bad input to the review API
is a 400 with a reason, never a 500 or a stored NaN."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classify.models import Item, Membership
from reviewer import services
from reviewer.models import Decision
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    ada = make_user("ada", is_staff=True)
    rey = make_user("rey")
    project = make_colour_project(admin=ada, reviewer=rey)
    for n in range(4):
        make_review_item(project, sha256=f"{n:064x}")
    client = Client()
    client.force_login(rey)
    return project, ada, rey, client


def red(project):
    return [project.labels.get(name="red")]


class RemovedMemberTests:
    def test_a_removed_reviewer_can_neither_renew_decide_skip_nor_release(self, team):
        project, _, rey, _ = team
        leases = [item.lease_token for item in services.claim_many(project=project, reviewer=rey, limit=4)]
        Membership.objects.filter(project=project, user=rey).delete()
        assert services.renew(tokens=[str(token) for token in leases], reviewer=rey) == []
        with pytest.raises(services.LeaseLost):
            services.record_decision(token=str(leases[0]), reviewer=rey, labels=red(project))
        with pytest.raises(services.LeaseLost):
            services.skip(token=str(leases[1]), reviewer=rey)
        assert services.release(token=str(leases[2]), reviewer=rey) is False
        assert not Decision.objects.exists()
        assert not Item.objects.filter(status=Item.Status.REVIEWED).exists()

    def test_a_removed_reviewer_cannot_undo(self, team):
        project, _, rey, _ = team
        leased = services.claim_many(project=project, reviewer=rey, limit=1)[0]
        services.record_decision(token=str(leased.lease_token), reviewer=rey, labels=red(project))
        Membership.objects.filter(project=project, user=rey).delete()
        with pytest.raises(services.ReviewError):
            services.undo_last(project=project, reviewer=rey)
        assert Item.objects.get(pk=leased.pk).status == Item.Status.REVIEWED

    def test_removing_a_member_in_the_admin_releases_their_leases(self, team):
        from tests.classify.test_admin_integrity import project_form

        project, ada, rey, _ = team
        held = services.claim_many(project=project, reviewer=rey, limit=2)
        data = project_form(project)
        index = next(i for i in range(int(data["memberships-TOTAL_FORMS"]))
                     if data[f"memberships-{i}-user"] == "rey")
        data[f"memberships-{index}-DELETE"] = "on"
        admin = Client()
        admin.force_login(ada)
        response = admin.post(f"/admin/classify/project/{project.pk}/change/", data)
        assert response.status_code == 302, response.content.decode()[:3000]
        assert not Membership.objects.filter(project=project, user=rey).exists()
        for item in held:
            item.refresh_from_db()
            assert (item.lease_owner, item.lease_token, item.lease_expires_at) == (None, None, None)
        # and someone else can take them at once
        other = make_user("sue")
        Membership.objects.create(project=project, user=other)
        assert len(services.claim_many(project=project, reviewer=other, limit=4)) == 4

    def test_a_reviewer_of_another_project_cannot_use_a_lease_they_hold_here(self, team):
        project, _, rey, client = team
        leased = services.claim_many(project=project, reviewer=rey, limit=1)[0]
        Membership.objects.filter(project=project, user=rey).delete()
        make_colour_project("elsewhere", reviewer=rey)  # still a member somewhere
        response = client.post(reverse("review_api:decision", args=[leased.lease_token]), {"labels": ["red"]},
                               content_type="application/json")
        assert response.status_code == 409 and not Decision.objects.exists()


class BadInputTests:
    @pytest.mark.parametrize("body", [{"tokens": 5}, {"tokens": "abc"}, {"tokens": {"a": 1}}, {"tokens": [[1]]}])
    def test_renew_with_tokens_that_are_not_a_list_of_strings_is_a_400(self, team, body):
        _, _, _, client = team
        response = client.post(reverse("review_api:renew"), body, content_type="application/json")
        assert response.status_code == 400 and "tokens" in response.json()["error"]

    @pytest.mark.parametrize("seconds", ["NaN", "nan", "Infinity", "-inf", -1, 86_401, "1e400"])
    def test_seconds_spent_must_be_a_real_duration(self, team, seconds):
        project, _, rey, client = team
        leased = services.claim_many(project=project, reviewer=rey, limit=1)[0]
        response = client.post(reverse("review_api:decision", args=[leased.lease_token]),
                               {"labels": ["red"], "seconds_spent": seconds}, content_type="application/json")
        assert response.status_code == 400 and "seconds_spent" in response.json()["error"]
        assert not Decision.objects.exists()

    def test_a_json_nan_literal_is_refused_too(self, team):
        project, _, rey, client = team
        leased = services.claim_many(project=project, reviewer=rey, limit=1)[0]
        response = client.post(reverse("review_api:decision", args=[leased.lease_token]),
                               b'{"labels": ["red"], "seconds_spent": NaN}', content_type="application/json")
        assert response.status_code == 400 and not Decision.objects.exists()
