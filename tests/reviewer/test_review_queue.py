"""The review queue's rules: leases, order, decisions, skip, undo, consensus, audit, grid, API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classify.models import Exemplar, Item, Membership, Project
from classify.services import intake
from reviewer import selectors, services
from reviewer.models import Decision
from tests.base import claim_next, make_colour_project, make_review_item, make_user, noisy_image, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    rey, ria, ada = make_user("rey"), make_user("ria"), make_user("ada", is_staff=True)
    project = make_colour_project(admin=ada, reviewer=rey)
    Membership.objects.create(project=project, user=ria)
    return project, rey, ria, ada


def labels(project, *names):
    return [project.labels.get(name=name) for name in names]


def scores(red=0.0, green=0.0, blue=0.0):
    return {"red": red, "green": green, "blue": blue, "unknown": round(1 - red - green - blue, 6)}


class ClaimTests:
    def test_the_most_uncertain_item_comes_first_by_default(self, team):
        project, rey, *_ = team
        sure = make_review_item(project, scores(red=0.7, green=0.1))
        unsure = make_review_item(project, scores(red=0.4, green=0.38))
        assert claim_next(project=project, reviewer=rey) == unsure
        assert claim_next(project=project, reviewer=rey) == sure
        assert claim_next(project=project, reviewer=rey) is None

    def test_oldest_first_and_random_orders(self, team):
        project, rey, ria, _ = team
        first = make_review_item(project, scores(red=0.7, green=0.1))
        make_review_item(project, scores(red=0.4, green=0.38))
        Project.objects.filter(pk=project.pk).update(review_order="oldest")
        project.refresh_from_db()
        assert claim_next(project=project, reviewer=rey) == first
        Project.objects.filter(pk=project.pk).update(review_order="random")
        project.refresh_from_db()
        assert claim_next(project=project, reviewer=ria) is not None

    def test_random_order_starts_at_a_random_point_and_wraps_round(self, team):
        from unittest import mock

        project, rey, ria, _ = team
        Project.objects.filter(pk=project.pk).update(review_order="random")
        project.refresh_from_db()
        low, high = make_review_item(project, sha256="1" * 64), make_review_item(project, sha256="c" * 64)
        with mock.patch("reviewer.services.secrets.token_hex", return_value="8" * 64):
            assert claim_next(project=project, reviewer=rey) == high
        with mock.patch("reviewer.services.secrets.token_hex", return_value="f" * 64):
            assert claim_next(project=project, reviewer=ria) == low  # nothing after: wraps round

    def test_a_held_item_is_not_handed_to_a_colleague_until_its_lease_runs_out(self, team):
        project, rey, ria, _ = team
        item = make_review_item(project)
        held = claim_next(project=project, reviewer=rey)
        assert held == item and held.lease_owner == rey
        assert claim_next(project=project, reviewer=ria) is None
        Item.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        taken = claim_next(project=project, reviewer=ria)
        assert taken == item and taken.lease_token != held.lease_token

    def test_a_stale_lease_stores_nothing(self, team):
        project, rey, ria, _ = team
        make_review_item(project)
        old = claim_next(project=project, reviewer=rey)
        Item.objects.filter(pk=old.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        with pytest.raises(services.LeaseLost):
            services.record_decision(token=str(old.lease_token), reviewer=rey, labels=labels(project, "red"))
        new = claim_next(project=project, reviewer=ria)
        with pytest.raises(services.LeaseLost):
            services.record_decision(token=str(old.lease_token), reviewer=rey, labels=labels(project, "red"))
        services.record_decision(token=str(new.lease_token), reviewer=ria, labels=labels(project, "green"))
        assert list(Decision.objects.values_list("reviewer__username", "label__name")) == [("ria", "green")]

    def test_renewing_keeps_the_lease_and_reports_lost_ones(self, team):
        project, rey, *_ = team
        item = make_review_item(project)
        held = claim_next(project=project, reviewer=rey)
        Item.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
        assert services.renew(tokens=[str(held.lease_token), "not-a-token"], reviewer=rey) == [str(held.lease_token)]
        item.refresh_from_db()
        assert item.lease_expires_at > timezone.now() + timedelta(seconds=60)


class DecisionTests:
    def test_a_decision_reviews_the_item_and_keeps_its_provenance(self, team):
        project, rey, *_ = team
        item = make_review_item(project, scores(red=0.5, green=0.3))
        held = claim_next(project=project, reviewer=rey)
        decision = services.record_decision(token=str(held.lease_token), reviewer=rey,
                                            labels=labels(project, "green"), seconds_spent=2.5)
        item.refresh_from_db()
        assert (item.status, item.label.name, item.labelled_by, item.lease_token) == ("reviewed", "green", rey, None)
        assert decision.prediction == item.predictions.get() and decision.scores_shown["red"] == 0.5
        assert decision.lease_token == held.lease_token and decision.seconds_spent == 2.5

    def test_a_double_submit_stores_one_decision(self, team):
        project, rey, *_ = team
        make_review_item(project)
        held = claim_next(project=project, reviewer=rey)
        services.record_decision(token=str(held.lease_token), reviewer=rey, labels=labels(project, "red"))
        with pytest.raises(services.LeaseLost):
            services.record_decision(token=str(held.lease_token), reviewer=rey, labels=labels(project, "red"))
        assert Decision.objects.count() == 1

    def test_the_unique_lease_token_backs_this_up(self, team):
        from django.db import IntegrityError, transaction

        project, rey, *_ = team
        item = make_review_item(project)
        token = "3f2b6c8e-1d4a-4c3b-9f5e-2a7d8c9b0e1f"
        Decision.objects.create(item=item, reviewer=rey, lease_token=token)
        with pytest.raises(IntegrityError), transaction.atomic():
            Decision.objects.create(item=item, reviewer=rey, lease_token=token)

    def test_someone_elses_lease_is_refused(self, team):
        project, rey, ria, _ = team
        make_review_item(project)
        held = claim_next(project=project, reviewer=rey)
        with pytest.raises(services.LeaseLost):
            services.record_decision(token=str(held.lease_token), reviewer=ria, labels=labels(project, "red"))

    def test_labels_are_checked(self, team):
        project, rey, *_ = team
        other = make_colour_project("other")
        make_review_item(project)
        token = str(claim_next(project=project, reviewer=rey).lease_token)
        with pytest.raises(services.DecisionRefused, match="another project"):
            services.record_decision(token=token, reviewer=rey, labels=labels(other, "red"))
        with pytest.raises(services.DecisionRefused, match="one class per image"):
            services.record_decision(token=token, reviewer=rey, labels=labels(project, "red", "green"))
        with pytest.raises(services.DecisionRefused, match="Pick a class"):
            services.record_decision(token=token, reviewer=rey, labels=[])
        assert not Decision.objects.exists()

    def test_multi_label_projects_take_several_classes(self, team):
        project, rey, *_ = team
        Project.objects.filter(pk=project.pk).update(multi_label=True)
        make_review_item(project)
        token = str(claim_next(project=project, reviewer=rey).lease_token)
        with pytest.raises(services.DecisionRefused, match="cannot be combined"):
            services.record_decision(token=token, reviewer=rey, labels=labels(project, "red", "unknown"))
        decision = services.record_decision(token=token, reviewer=rey, labels=labels(project, "red", "blue"))
        assert sorted(decision.labels.values_list("name", flat=True)) == ["blue", "red"]


class SkipAndUndoTests:
    def test_a_skipped_item_goes_to_a_colleague_not_back_to_me(self, team):
        project, rey, ria, _ = team
        item = make_review_item(project)
        services.skip(token=str(claim_next(project=project, reviewer=rey).lease_token), reviewer=rey)
        assert claim_next(project=project, reviewer=rey) is None
        assert claim_next(project=project, reviewer=ria) == item
        assert Decision.objects.get().kind == Decision.Kind.SKIP

    def test_undo_is_a_new_revision_and_gives_the_item_back(self, team):
        project, rey, *_ = team
        item = make_review_item(project)
        token = str(claim_next(project=project, reviewer=rey).lease_token)
        first = services.record_decision(token=token, reviewer=rey, labels=labels(project, "red"))
        again = services.undo_last(project=project, reviewer=rey)
        assert again == item and again.status == Item.Status.NEEDS_REVIEW and again.lease_owner == rey
        assert again.label is None
        first.refresh_from_db()
        assert first.undone
        undo = Decision.objects.get(kind=Decision.Kind.UNDO)
        assert undo.supersedes == first
        services.record_decision(token=str(again.lease_token), reviewer=rey, labels=labels(project, "blue"))
        item.refresh_from_db()
        assert item.label.name == "blue" and Decision.objects.count() == 3

    def test_the_item_page_shows_every_decision_undone_ones_included(self, team):
        project, rey, *_ = team
        item = make_review_item(project)
        token = str(claim_next(project=project, reviewer=rey).lease_token)
        services.record_decision(token=token, reviewer=rey, labels=labels(project, "red"))
        again = services.undo_last(project=project, reviewer=rey)
        services.record_decision(token=str(again.lease_token), reviewer=rey, labels=labels(project, "blue"))
        client = Client()
        client.force_login(rey)
        page = client.get(reverse("classify:item_detail", args=[project.slug, item.pk])).content.decode()
        decisions = page[page.index('<ol class="decisions">'):page.index("</ol>")]
        assert decisions.count("<li") == 3
        red, undo, blue = decisions.split("<li")[1:]
        assert 'class="decision-label undone"' in red and "Labelled red" in red and "undone, kept for the record" in red
        assert "Undid the decision before" in undo and "by rey" in undo
        assert 'class="decision-label"' in blue and "Labelled blue" in blue and "undone" not in blue

    def test_undo_after_a_skip_brings_the_skipped_item_back(self, team):
        project, rey, *_ = team
        item = make_review_item(project)
        services.skip(token=str(claim_next(project=project, reviewer=rey).lease_token), reviewer=rey)
        again = services.undo_last(project=project, reviewer=rey)
        assert again == item and again.lease_owner == rey
        assert Decision.objects.get(kind=Decision.Kind.SKIP).undone
        services.record_decision(token=str(again.lease_token), reviewer=rey, labels=labels(project, "red"))
        item.refresh_from_db()
        assert item.status == Item.Status.REVIEWED

    def test_undo_refuses_when_a_colleague_decided_since_or_there_is_nothing(self, team):
        project, rey, ria, _ = team
        Project.objects.filter(pk=project.pk).update(consensus_reviews=2, consensus_below=1.0)
        make_review_item(project, reviews_needed=2)
        with pytest.raises(services.ReviewError, match="Nothing to undo"):
            services.undo_last(project=project, reviewer=rey)
        services.record_decision(token=str(claim_next(project=project, reviewer=rey).lease_token),
                                 reviewer=rey, labels=labels(project, "red"))
        services.record_decision(token=str(claim_next(project=project, reviewer=ria).lease_token),
                                 reviewer=ria, labels=labels(project, "red"))
        with pytest.raises(services.LeaseLost, match="decided that item since"):
            services.undo_last(project=project, reviewer=rey)


class ConsensusTests:
    def setup(self, team, count=1):
        project, *_ = team
        Project.objects.filter(pk=project.pk).update(consensus_reviews=2)
        return [make_review_item(project, reviews_needed=2) for _ in range(count)]

    def decide(self, project, reviewer, name):
        token = str(claim_next(project=project, reviewer=reviewer).lease_token)
        return services.record_decision(token=token, reviewer=reviewer, labels=labels(project, name))

    def test_agreeing_reviewers_finish_the_item(self, team):
        project, rey, ria, _ = team
        (item,) = self.setup(team)
        self.decide(project, rey, "red")
        item.refresh_from_db()
        assert item.status == Item.Status.NEEDS_REVIEW and item.lease_token is None
        assert claim_next(project=project, reviewer=rey) is None  # independent reviews
        self.decide(project, ria, "red")
        item.refresh_from_db()
        assert item.status == Item.Status.REVIEWED and item.label.name == "red"
        assert set(Decision.objects.values_list("agrees", flat=True)) == {True}

    def test_disagreement_goes_to_a_project_admin(self, team):
        project, rey, ria, ada = team
        (item,) = self.setup(team)
        self.decide(project, rey, "red")
        self.decide(project, ria, "green")
        item.refresh_from_db()
        assert item.escalated and item.status == Item.Status.NEEDS_REVIEW
        assert claim_next(project=project, reviewer=make_user("ron")) is None
        self.decide(project, ada, "green")
        item.refresh_from_db()
        assert item.status == Item.Status.REVIEWED and item.label.name == "green" and not item.escalated
        rates = selectors.agreement_rates(project)
        assert rates["reviewers"]["rey"] == {"decisions": 1, "agreed": 0}
        assert rates["reviewers"]["ria"] == {"decisions": 1, "agreed": 1}
        assert rates["classes"]["green"] == {"decisions": 3, "agreed": 2}

    def test_only_low_scores_need_consensus(self, team, django_capture_on_commit_callbacks):
        project, *_ = team
        Project.objects.filter(pk=project.pk).update(consensus_reviews=3, consensus_below=0.5)
        with django_capture_on_commit_callbacks(execute=True):
            low = intake.ingest_upload(project=project, data=noisy_image((90, 90, 90), seed=1), filename="a.png")
            high = intake.ingest_upload(project=project, data=noisy_image((210, 20, 20), seed=2), filename="b.png")
        low.refresh_from_db()
        high.refresh_from_db()
        assert low.reviews_needed == 3 and high.reviews_needed == 1


class AuditTests:
    def test_sampled_auto_accepts_are_reviewed_without_telling_the_reviewer(self, team, django_capture_on_commit_callbacks):
        project, rey, *_ = team
        project.labels.filter(name="red").update(audit_rate=1.0)
        with django_capture_on_commit_callbacks(execute=True):
            item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="r.png")
        item.refresh_from_db()
        assert item.status == Item.Status.NEEDS_REVIEW and item.audit and item.label is None
        assert item.predictions.get().decision == "auto_accepted"
        client = Client()
        client.force_login(rey)
        claim = client.post(reverse("review_api:claim", args=[project.slug])).json()
        assert claim["item"]["status_reason"] == "" and "audit" not in json.dumps(claim).lower()
        client.post(reverse("review_api:decision", args=[claim["lease"]["token"]]),
                    {"labels": ["green"]}, content_type="application/json")
        assert Decision.objects.get().audit
        assert selectors.audit_accuracy(project) == {"red": {"checked": 1, "confirmed": 0}}


class GridTests:
    def test_grid_claims_one_class_best_score_first_and_accepts_the_rest(self, team):
        project, rey, ria, _ = team
        low = make_review_item(project, scores(red=0.55, green=0.2))
        high = make_review_item(project, scores(red=0.75, green=0.1))
        other = make_review_item(project, scores(green=0.6, blue=0.2))
        items = services.claim_many(project=project, reviewer=rey, limit=24, top_label="red")
        assert items == [high, low]
        assert claim_next(project=project, reviewer=ria) == other
        services.release(token=str(items[1].lease_token), reviewer=rey)  # flagged: back to the queue
        services.record_decision(token=str(items[0].lease_token), reviewer=rey, labels=labels(project, "red"))
        low.refresh_from_db()
        high.refresh_from_db()
        assert low.status == Item.Status.NEEDS_REVIEW and low.lease_token is None
        assert high.status == Item.Status.REVIEWED


@pytest.fixture
def api(team):
    project, rey, *_ = team
    client = Client()
    client.force_login(rey)
    return project, client


class ApiTests:
    def claim(self, client, project):
        return client.post(reverse("review_api:claim", args=[project.slug]))

    def test_claim_gives_scores_candidates_exemplars_and_a_lease(self, api):
        project, client = api
        Project.objects.filter(pk=project.pk).update(review_candidates=2)
        red = project.labels.get(name="red")
        Exemplar.objects.create(label=red, sha256="0" * 64, image=ContentFile(solid_image((255, 0, 0), fmt="JPEG"), name="e.jpg"))
        item = make_review_item(project, scores(red=0.5, green=0.3, blue=0.1))
        body = self.claim(client, project).json()
        assert body["item"]["id"] == item.pk and body["lease"]["token"]
        assert [c["label"] for c in body["candidates"]] == ["red", "green"]
        assert body["candidates"][0]["key"] == 1 and len(body["candidates"][0]["exemplars"]) == 1
        assert body["candidates"][1]["exemplars"] == []
        assert body["unknown"]["label"] == "unknown" and body["unknown"]["score"] == pytest.approx(0.1)
        assert body["remaining"] == 1 and body["pace_today"] == 0
        assert client.get(body["candidates"][0]["exemplars"][0])["Content-Type"] == "image/jpeg"

    def test_a_class_nobody_labelled_shows_confident_auto_accepts_marked_auto(self, api):
        project, client = api
        red = project.labels.get(name="red")
        sure = make_review_item(project, scores(red=0.97))
        Item.objects.filter(pk=sure.pk).update(status=Item.Status.AUTO_ACCEPTED, label=red, top_label="red", top_score=0.97)
        make_review_item(project, scores(red=0.5, green=0.3))
        candidate = self.claim(client, project).json()["candidates"][0]
        assert candidate["label"] == "red" and candidate["exemplars_auto"] is True
        assert candidate["exemplars"] == [f"/items/{sure.pk}/image"]
        # Once a person has labelled the class, its labelled items are shown instead (the pictures
        # are shared by the project's claims for a minute: here that minute is over).
        labelled = make_review_item(project, scores(red=0.6))
        Item.objects.filter(pk=labelled.pk).update(status=Item.Status.REVIEWED, label=red)
        cache.delete(selectors.exemplar_cache_key(project))
        Item.objects.filter(lease_owner__isnull=False).update(lease_owner=None, lease_token=None, lease_expires_at=None)
        candidate = next(c for c in self.claim(client, project).json()["candidates"] if c["label"] == "red")
        assert candidate["exemplars_auto"] is False and candidate["exemplars"] == [f"/items/{labelled.pk}/image"]
        assert not Exemplar.objects.exists()  # shown, never made exemplars

    def test_number_keys_follow_the_class_order_an_admin_sets(self, api):
        project, client = api
        make_review_item(project, scores(red=0.5, green=0.3, blue=0.1))
        body = self.claim(client, project).json()
        assert {c["label"]: c["key"] for c in body["candidates"]} == {"red": 1, "green": 2, "blue": 3}
        assert body["unknown"]["key"] == 0 and body["top"] == "red"
        Item.objects.update(lease_owner=None, lease_token=None, lease_expires_at=None)
        project.labels.filter(name="blue").update(order=0)
        project.labels.filter(name="red").update(order=5)
        body = self.claim(client, project).json()
        assert {c["label"]: c["key"] for c in body["candidates"]} == {"blue": 1, "green": 2, "red": 3}
        assert [c["label"] for c in body["candidates"]] == ["red", "green", "blue"]  # still listed by score

    def test_an_empty_queue_answers_204(self, api):
        project, client = api
        assert self.claim(client, project).status_code == 204

    def test_decision_answers_201_then_409_for_the_same_lease(self, api):
        project, client = api
        make_review_item(project)
        token = self.claim(client, project).json()["lease"]["token"]
        url = reverse("review_api:decision", args=[token])
        first = client.post(url, {"labels": ["red"], "seconds_spent": 1.5}, content_type="application/json")
        assert first.status_code == 201 and first.json()["status"] == "reviewed"
        second = client.post(url, {"labels": ["red"]}, content_type="application/json")
        assert second.status_code == 409 and "no longer yours" in second.json()["error"]
        assert Decision.objects.count() == 1

    def test_bad_labels_answer_400(self, api):
        project, client = api
        make_review_item(project)
        token = self.claim(client, project).json()["lease"]["token"]
        url = reverse("review_api:decision", args=[token])
        assert client.post(url, {"labels": ["purple"]}, content_type="application/json").status_code == 400
        assert client.post(url, "{nope", content_type="application/json").status_code == 400
        assert client.post(url, {"labels": ["red"], "seconds_spent": "x"}, content_type="application/json").status_code == 400
        assert client.post(url, {"labels": [project.labels.get(name="red").pk]}, content_type="application/json").status_code == 201

    def test_prefetch_skip_undo_renew_and_stats(self, api):
        project, client = api
        for _ in range(3):
            make_review_item(project)
        claims = client.post(reverse("review_api:claim", args=[project.slug]) + "?count=3").json()["claims"]
        assert len({c["item"]["id"] for c in claims}) == 3
        tokens = [c["lease"]["token"] for c in claims]
        renewed = client.post(reverse("review_api:renew"), {"tokens": tokens}, content_type="application/json").json()
        assert sorted(renewed["renewed"]) == sorted(tokens) and renewed["lost"] == []
        assert client.post(reverse("review_api:skip", args=[tokens[0]])).status_code == 200
        assert client.post(reverse("review_api:release", args=[tokens[1]])).status_code == 200
        client.post(reverse("review_api:decision", args=[tokens[2]]), {"labels": ["blue"]}, content_type="application/json")
        undone = client.post(reverse("review_api:undo", args=[project.slug])).json()
        assert undone["item"]["id"] == claims[2]["item"]["id"] and undone["lease"]["token"] not in tokens
        stats = client.get(reverse("review_api:stats", args=[project.slug])).json()
        back_at = stats["hidden"].pop("skipped_back_at")
        # An undone label does not count; waiting counts every item in review, held or not.
        assert stats == {"remaining": 3, "pace_today": 0, "by_class": {"red": 3},
                         "hidden": {"skipped": 1, "held": 0, "awaiting_others": 0}}  # my skip, hidden for an hour
        skip = Decision.objects.get(kind=Decision.Kind.SKIP)
        assert back_at == (skip.created_at + timedelta(hours=1)).isoformat()
        skipped_again = client.post(reverse("review_api:undo", args=[project.slug])).json()
        assert skipped_again["item"]["id"] == claims[0]["item"]["id"]  # then the skip before it
        assert client.post(reverse("review_api:undo", args=[project.slug])).status_code == 400

    def test_stats_explain_what_is_hidden_and_count_today_per_project(self, team):
        project, rey, ria, _ = team
        Project.objects.filter(pk=project.pk).update(consensus_reviews=2, consensus_below=1.0)
        held, decided = make_review_item(project), make_review_item(project)
        Item.objects.filter(pk__in=[held.pk, decided.pk]).update(reviews_needed=2)
        services.claim_many(project=project, reviewer=ria, limit=1)  # ria holds the first
        token = str(claim_next(project=project, reviewer=rey).lease_token)
        services.record_decision(token=token, reviewer=rey, labels=labels(project, "red"))  # waits for a 2nd person
        other = make_colour_project("other", reviewer=rey)
        make_review_item(other)
        services.record_decision(token=str(claim_next(project=other, reviewer=rey).lease_token), reviewer=rey,
                                 labels=labels(other, "blue"))
        client = Client()
        client.force_login(rey)
        stats = client.get(reverse("review_api:stats", args=[project.slug])).json()
        assert stats["remaining"] == 2 and stats["pace_today"] == 1  # the label in "other" is not counted here
        assert stats["hidden"] == {"skipped": 0, "skipped_back_at": None, "held": 1, "awaiting_others": 1}
        assert client.get(reverse("review_api:stats", args=[other.slug])).json()["pace_today"] == 1

    def test_grid_claim_leaves_out_the_items_the_page_flagged(self, api):
        project, client = api
        first = make_review_item(project, scores(red=0.7))
        second = make_review_item(project, scores(red=0.6))
        url = reverse("review_api:grid_claim", args=[project.slug])
        body = client.post(url, {"exclude": [first.pk]}, content_type="application/json").json()
        assert [claim["item"]["id"] for claim in body["claims"]] == [second.pk]
        assert body["by_class"] == {"red": 2}  # both still wait (one held here, the flagged one for the queue)
        assert client.post(url, {"exclude": ["x"]}, content_type="application/json").status_code == 400

    def test_grid_claim_defaults_to_the_busiest_class(self, api):
        project, client = api
        make_review_item(project, scores(green=0.6))
        make_review_item(project, scores(red=0.6))
        make_review_item(project, scores(red=0.7))
        body = client.post(reverse("review_api:grid_claim", args=[project.slug])).json()
        assert body["label"] == "red" and len(body["claims"]) == 2
        body = client.post(reverse("review_api:grid_claim", args=[project.slug]), {"label": "green"},
                           content_type="application/json").json()
        assert body["label"] == "green" and len(body["claims"]) == 1
        assert client.post(reverse("review_api:grid_claim", args=[project.slug])).status_code == 204

    def test_the_pages_render_for_members(self, api):
        project, client = api
        for name in ("reviewer:queue", "reviewer:grid"):
            page = client.get(reverse(name, args=[project.slug]))
            assert page.status_code == 200 and 'data-project="colours"' in page.content.decode()
