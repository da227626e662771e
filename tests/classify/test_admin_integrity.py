"""The admin keeps model outputs, provenance, leases and metrics read-only, shows each project
admin only their projects' rows, and never lists every account in a user picker."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from classify.models import Item, Membership, ModelVersion
from reviewer import services as review
from reviewer.models import Decision
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    ada = make_user("ada", is_staff=True)
    rey = make_user("rey")
    project = make_colour_project(admin=ada, reviewer=rey)
    bob = make_user("bob", is_staff=True)
    other = make_colour_project("other", admin=bob)
    item = make_review_item(project)
    leased = review.claim_many(project=project, reviewer=rey, limit=1)[0]
    decision = review.record_decision(token=str(leased.lease_token), reviewer=rey,
                                      labels=[project.labels.get(name="red")])
    version = ModelVersion.objects.create(project=project, backend="local", version="v1", f1=0.7,
                                          config={"mode": "trained"}, metrics={"f1": 0.7})
    client = Client()
    client.force_login(ada)
    return {"ada": ada, "bob": bob, "rey": rey, "project": project, "other": other, "item": item,
            "decision": decision, "version": version, "client": client}


def editable_inputs(html: str) -> set[str]:
    """Names of form fields a person could change on an admin page."""
    names = set(re.findall(r'<(?:input|select|textarea)[^>]*\bname="([^"]+)"', html))
    hidden = set(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"', html))
    return names - hidden - {"csrfmiddlewaretoken", "_save", "_continue", "_addanother", "q", "action", "index",
                             "select_across", "_selected_action"}


class ReadOnlyTests:
    def test_an_items_model_outputs_and_lease_cannot_be_edited(self, world):
        response = world["client"].get(f"/admin/classify/item/{world['item'].pk}/change/")
        assert response.status_code == 200
        assert editable_inputs(response.content.decode()) == set()

    def test_posting_new_model_outputs_changes_nothing(self, world):
        item = world["item"]
        before = Item.objects.filter(pk=item.pk).values().get()
        world["client"].post(f"/admin/classify/item/{item.pk}/change/", {
            "top_score": "0.99", "margin": "0.99", "top_label": "blue", "lease_owner": world["bob"].pk,
            "audit": "on", "backend": "rekognition", "escalated": "on", "reviews_needed": "5",
            "predictions-TOTAL_FORMS": "0", "predictions-INITIAL_FORMS": "0"})
        after = Item.objects.filter(pk=item.pk).values().get()
        assert after == before

    def test_a_model_versions_f1_config_and_metrics_cannot_be_edited(self, world):
        version = world["version"]
        response = world["client"].get(f"/admin/classify/modelversion/{version.pk}/change/")
        assert response.status_code == 200 and editable_inputs(response.content.decode()) == set()
        world["client"].post(f"/admin/classify/modelversion/{version.pk}/change/",
                             {"f1": "0.99", "config": '{"project_version_arn": "arn:aws:x"}', "metrics": "{}"})
        version.refresh_from_db()
        assert (version.f1, version.config, version.metrics) == (0.7, {"mode": "trained"}, {"f1": 0.7})

    def test_provenance_cannot_be_deleted(self, world):
        client = world["client"]
        client.post(f"/admin/classify/modelversion/{world['version'].pk}/delete/", {"post": "yes"})
        client.post(f"/admin/reviewer/decision/{world['decision'].pk}/delete/", {"post": "yes"})
        assert ModelVersion.objects.filter(pk=world["version"].pk).exists()
        assert Decision.objects.filter(pk=world["decision"].pk).exists()


class ScopeTests:
    def test_a_project_admin_sees_the_decisions_of_their_projects_only(self, world):
        assert world["client"].get(f"/admin/reviewer/decision/{world['decision'].pk}/change/").status_code == 200
        listing = world["client"].get("/admin/reviewer/decision/")
        assert listing.status_code == 200 and listing.context["cl"].result_count == 1
        bob = Client()
        bob.force_login(world["bob"])
        assert bob.get("/admin/reviewer/decision/").context["cl"].result_count == 0
        response = bob.get(f"/admin/reviewer/decision/{world['decision'].pk}/change/")
        assert response.status_code == 302  # "does not exist", like any row outside one's projects

    def test_filters_offer_only_ones_own_projects(self, world):
        for slug, admin in (("second", world["ada"]), ("zzz-bobs", world["bob"])):
            project = make_colour_project(slug, admin=admin, reviewer=make_user(f"rev-{slug}"))
            make_review_item(project)
            reviewer = project.memberships.get(role="reviewer").user
            leased = review.claim_many(project=project, reviewer=reviewer, limit=1)[0]
            review.record_decision(token=str(leased.lease_token), reviewer=reviewer,
                                   labels=[project.labels.get(name="red")])
        specs = world["client"].get("/admin/reviewer/decision/").context["cl"].filter_specs
        projects = next(spec for spec in specs if spec.field_path == "item__project")
        assert sorted(name for _, name in projects.lookup_choices) == ["colours", "second"]

    def test_the_membership_picker_does_not_list_every_account(self, world):
        make_user("zed-unrelated")
        page = world["client"].get(f"/admin/classify/project/{world['project'].pk}/change/").content.decode()
        assert "zed-unrelated" not in page and "bob" not in page
        assert re.search(r'name="memberships-0-user"[^>]*value="(ada|rey)"', page)

    def test_a_project_admin_adds_a_member_by_exact_username(self, world):
        make_user("newbie")
        project = world["project"]
        data = project_form(project)
        data.update({"memberships-TOTAL_FORMS": "3", "memberships-2-user": "newbie", "memberships-2-role": "reviewer",
                     "memberships-2-project": project.pk})
        response = world["client"].post(f"/admin/classify/project/{project.pk}/change/", data)
        assert response.status_code == 302, response.content.decode()[:3000]
        assert Membership.objects.filter(project=project, user__username="newbie").exists()
        data["memberships-2-user"] = "nobody-of-that-name"
        data["memberships-TOTAL_FORMS"] = "4"
        data["memberships-INITIAL_FORMS"] = "3"
        data.update({"memberships-2-id": Membership.objects.get(user__username="newbie").pk,
                     "memberships-2-user": "newbie", "memberships-3-user": "nobody-of-that-name",
                     "memberships-3-role": "reviewer", "memberships-3-project": project.pk})
        response = world["client"].post(f"/admin/classify/project/{project.pk}/change/", data)
        assert response.status_code == 200 and "No active user with that username." in response.content.decode()


def project_form(project) -> dict:
    """The project's change form as the admin page would post it back unchanged."""
    data = {field: getattr(project, field) for field in (
        "name", "slug", "description", "backend", "learning_mode", "target_precision", "refit_every",
        "min_examples_per_class", "review_order",
        "review_candidates", "grid_size", "lease_seconds", "consensus_reviews", "consensus_below", "min_side",
        "min_brightness", "max_brightness", "min_sharpness", "max_aspect_ratio")}
    data["backend_config"] = "{}"
    labels = list(project.labels.all())
    data.update({"labels-TOTAL_FORMS": len(labels), "labels-INITIAL_FORMS": len(labels)})
    for index, label in enumerate(labels):
        data.update({f"labels-{index}-id": label.pk, f"labels-{index}-project": project.pk,
                     f"labels-{index}-name": label.name, f"labels-{index}-order": label.order,
                     f"labels-{index}-accept_threshold": label.accept_threshold,
                     f"labels-{index}-margin": label.margin, f"labels-{index}-audit_rate": label.audit_rate})
    members = list(project.memberships.select_related("user").order_by("pk"))
    data.update({"memberships-TOTAL_FORMS": len(members), "memberships-INITIAL_FORMS": len(members)})
    for index, membership in enumerate(members):
        data.update({f"memberships-{index}-id": membership.pk, f"memberships-{index}-project": project.pk,
                     f"memberships-{index}-user": membership.user.username,
                     f"memberships-{index}-role": membership.role})
    return {key: value for key, value in data.items() if value is not None}
