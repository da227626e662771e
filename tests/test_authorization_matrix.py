"""Who may do what: every URL of Loupe against every role, in one table.

Each role gets its own fresh world: project A (the one under test) with items, leases, an exemplar,
an export, a training run, a model version and a decision; project B, administered by someone else.
Lease rows act on a lease of the acting user when they hold one (the removed member's was taken
while they were still a member), else on the reviewer's. The table says what each role gets:
a status code, ``LOGIN`` (a redirect to the login page), ``ADMIN_LOGIN`` (to the admin's),
``KEPT``/``LOST`` (a renew that kept or lost the lease).
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import get_resolver, reverse

from classify.models import Event, Exemplar, Membership, ModelVersion, TrainingRun
from integrations.models import Delivery, Endpoint, S3Import
from reviewer import services as review
from reviewer.models import Decision, Export
from tests.base import make_colour_project, make_review_item, make_user, noisy_image, solid_image

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "outsider", "removed member", "reviewer", "staff reviewer", "admin of another project",
         "project admin")
LOGIN, ADMIN_LOGIN, KEPT, LOST = "login", "admin login", "kept", "lost"
L, AL = LOGIN, ADMIN_LOGIN

# name: (method, url, body) -> one expectation per role, in ROLES order.
#                                       anon  outsider removed reviewer staff-rev other-adm admin
MATRIX: dict[str, tuple] = {
    "login":                             (200, 200, 200, 200, 200, 200, 200),
    "classify:home":                     (L, 200, 200, 200, 200, 200, 200),
    "classify:account":                  (L, 200, 200, 200, 200, 200, 200),
    "classify:healthz":                  (503, 503, 503, 503, 503, 503, 503),  # public; no worker runs here
    "classify:livez":                    (200, 200, 200, 200, 200, 200, 200),
    "classify:project_create":           (L, 403, 403, 403, 200, 200, 200),
    "classify:project_suggestions":      (L, 403, 403, 403, 200, 200, 200),
    "classify:project":                  (L, 404, 404, 200, 200, 404, 200),
    "classify:item_detail":              (L, 404, 404, 200, 200, 404, 200),
    "classify:item_image":               (L, 404, 404, 200, 200, 404, 200),
    "classify:backends":                 (L, 404, 404, 403, 403, 404, 200),
    "classify:reclassify":               (L, 404, 404, 403, 403, 404, 200),
    "classify:models":                   (L, 404, 404, 403, 403, 404, 200),
    "classify:decide_run":               (L, 404, 404, 403, 403, 404, 302),
    "reviewer:queue":                    (L, 404, 404, 200, 200, 404, 200),
    "reviewer:grid":                     (L, 404, 404, 200, 200, 404, 200),
    "reviewer:export":                   (L, 404, 404, 403, 403, 404, 200),
    "reviewer:export_download":          (L, 404, 404, 403, 403, 404, 200),
    "reviewer:exemplar_image":           (L, 404, 404, 200, 200, 404, 200),
    "api:project_items":                 (401, 404, 404, 200, 200, 404, 200),
    "api:item_detail":                   (401, 404, 404, 200, 200, 404, 200),
    "api:learning":                      (401, 404, 404, 200, 200, 404, 200),
    "api:class_exemplars":               (401, 404, 404, 403, 403, 404, 201),
    "api:exemplar_detail":               (401, 404, 404, 403, 403, 404, 200),
    "review_api:stats":                  (401, 404, 404, 200, 200, 404, 200),
    "review_api:claim":                  (401, 404, 404, 200, 200, 404, 200),
    "review_api:grid_claim":             (401, 404, 404, 200, 200, 404, 200),
    "review_api:renew":                  (401, LOST, LOST, KEPT, KEPT, LOST, KEPT),
    "review_api:decision":               (401, 409, 409, 201, 201, 409, 201),
    "review_api:skip":                   (401, 409, 409, 200, 200, 409, 200),
    "review_api:release":                (401, 409, 409, 200, 200, 409, 200),
    "review_api:undo":                   (401, 404, 404, 200, 200, 404, 200),
    "integrations:page":                 (L, 404, 404, 403, 403, 404, 200),
    "integrations:endpoint":             (L, 404, 404, 403, 403, 404, 302),
    "integrations:retry":                (L, 404, 404, 403, 403, 404, 302),
    "integrations:import_status":        (L, 404, 404, 403, 403, 404, 200),
    "integrations:api_docs":             (L, 200, 200, 200, 200, 200, 200),
    "integrations_api:schema":           (401, 200, 200, 200, 200, 200, 200),
    "dashboard:dashboard":               (L, 404, 404, 200, 200, 404, 200),
    "dashboard:plot":                    (L, 404, 404, 200, 200, 404, 200),
    "metrics":                           (200, 200, 200, 200, 200, 200, 200),  # from LOUPE_METRICS_ALLOW (loopback)
    "admin:index":                       (AL, AL, AL, AL, 200, 200, 200),
    "admin:classify_project_change":     (L, AL, AL, AL, 403, 302, 200),
    "admin:classify_label_change":       (L, AL, AL, AL, 403, 302, 200),
    "admin:classify_item_change":        (L, AL, AL, AL, 403, 302, 200),
    "admin:classify_modelversion_change": (L, AL, AL, AL, 403, 302, 200),
    "admin:reviewer_decision_change":    (L, AL, AL, AL, 403, 302, 200),
}

# Named URLs of the admin not in the table: the rest of Django's admin machinery (add, delete,
# history, changelists...), held to the same ModelAdmin permissions as the change pages above.
OUR_NAMESPACES = ("classify", "reviewer", "api", "review_api", "integrations", "integrations_api", "dashboard")


def build_world(role: str) -> dict:
    """Project A with everything a URL can point at, the acting user, and their leases."""
    admin = make_user("ada", is_staff=True)
    reviewer = make_user("rey")
    project = make_colour_project("alpha", admin=admin, reviewer=reviewer)
    project.grid_size = 2
    project.save()
    other_admin = make_user("bob", is_staff=True)
    make_colour_project("beta", admin=other_admin)
    actors = {"anonymous": None, "outsider": make_user("otto"), "reviewer": reviewer, "project admin": admin,
              "admin of another project": other_admin}
    if role == "staff reviewer":
        actors[role] = make_user("sam", is_staff=True)
        Membership.objects.create(project=project, user=actors[role], role=Membership.Role.REVIEWER)
    if role == "removed member":
        actors[role] = make_user("remy")
        Membership.objects.create(project=project, user=actors[role], role=Membership.Role.REVIEWER)
    actor = actors[role]
    items = [make_review_item(project, sha256=f"{n:064x}") for n in range(12)]
    holder = actor if role in ("reviewer", "staff reviewer", "project admin", "removed member") else reviewer
    leases = {kind: review.claim_many(project=project, reviewer=holder, limit=1)[0].lease_token
              for kind in ("renew", "decision", "skip", "release")}
    decided = review.claim_many(project=project, reviewer=reviewer, limit=1)[0]
    decision = review.record_decision(token=str(decided.lease_token), reviewer=reviewer,
                                      labels=[project.labels.get(name="red")])
    if holder == actor and role != "removed member":
        # something of their own to undo
        mine = review.claim_many(project=project, reviewer=actor, limit=1)[0]
        review.record_decision(token=str(mine.lease_token), reviewer=actor, labels=[project.labels.get(name="blue")])
    if role == "removed member":
        Membership.objects.filter(project=project, user=actor).delete()  # the row only: leases stay on items
    exemplar = Exemplar.objects.create(label=project.labels.get(name="red"), sha256="0" * 64,
                                       image=ContentFile(solid_image((250, 2, 3), fmt="JPEG"), name="e.jpg"))
    export = Export.objects.create(project=project, target=Export.DOWNLOAD, state=Export.State.DONE)
    export.file.save("export.zip", ContentFile(b"PK\x05\x06" + bytes(18)))
    run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.LOCAL, state=TrainingRun.State.FAILED)
    version = ModelVersion.objects.create(project=project, backend="local", version="v1", f1=0.9)
    endpoint = Endpoint.objects.create(project=project, url="https://hooks.example.com/loupe")
    delivery = Delivery.objects.create(endpoint=endpoint, state=Delivery.State.FAILED,
                                       event=Event.objects.create(project=project, type=Event.Type.PING, data={}))
    s3_import = S3Import.objects.create(project=project, source="s3://loupe-data/alpha")
    return {"actor": actor, "project": project, "item": items[0], "leases": leases, "exemplar": exemplar,
            "export": export, "run": run, "version": version, "decision": decision, "endpoint": endpoint,
            "delivery": delivery, "s3_import": s3_import}


def request_for(name: str, world: dict) -> tuple[str, str, dict | None]:
    """(method, url, JSON body) for a row of the table."""
    slug, item, leases = world["project"].slug, world["item"], world["leases"]
    urls = {
        "login": ("get", reverse("login"), None),
        "classify:home": ("get", reverse("classify:home"), None),
        "classify:account": ("get", reverse("classify:account"), None),
        "classify:healthz": ("get", reverse("classify:healthz"), None),
        "classify:livez": ("get", reverse("classify:livez"), None),
        "classify:project_create": ("get", reverse("classify:project_create"), None),
        "classify:project_suggestions": ("get", reverse("classify:project_suggestions") + "?labels=bird", None),
        "classify:project": ("get", reverse("classify:project", args=[slug]), None),
        "classify:item_detail": ("get", reverse("classify:item_detail", args=[slug, item.pk]), None),
        "classify:item_image": ("get", reverse("classify:item_image", args=[item.pk]), None),
        "classify:backends": ("get", reverse("classify:backends", args=[slug]), None),
        "classify:reclassify": ("get", reverse("classify:reclassify", args=[slug]) + "?scope=machine", None),
        "classify:models": ("get", reverse("classify:models", args=[slug]), None),
        "classify:decide_run": ("post", reverse("classify:decide_run", args=[slug, world["run"].pk]), None),
        "reviewer:queue": ("get", reverse("reviewer:queue", args=[slug]), None),
        "reviewer:grid": ("get", reverse("reviewer:grid", args=[slug]), None),
        "reviewer:export": ("get", reverse("reviewer:export", args=[slug]), None),
        "reviewer:export_download": ("get", reverse("reviewer:export_download", args=[slug, world["export"].pk]), None),
        "reviewer:exemplar_image": ("get", reverse("reviewer:exemplar_image", args=[world["exemplar"].pk]), None),
        "api:project_items": ("get", reverse("api:project_items", args=[slug]), None),
        "api:item_detail": ("get", reverse("api:item_detail", args=[item.pk]), None),
        "api:learning": ("get", reverse("api:learning", args=[slug]), None),
        "api:class_exemplars": ("upload", reverse("api:class_exemplars", args=[slug, world["exemplar"].label_id]),
                                None),
        "api:exemplar_detail": ("delete", reverse("api:exemplar_detail", args=[world["exemplar"].pk]), None),
        "review_api:stats": ("get", reverse("review_api:stats", args=[slug]), None),
        "review_api:claim": ("post", reverse("review_api:claim", args=[slug]), None),
        "review_api:grid_claim": ("post", reverse("review_api:grid_claim", args=[slug]), {}),
        "review_api:renew": ("post", reverse("review_api:renew"), {"tokens": [str(leases["renew"])]}),
        "review_api:decision": ("post", reverse("review_api:decision", args=[leases["decision"]]),
                                {"labels": ["red"], "seconds_spent": 1.5}),
        "review_api:skip": ("post", reverse("review_api:skip", args=[leases["skip"]]), None),
        "review_api:release": ("post", reverse("review_api:release", args=[leases["release"]]), None),
        "review_api:undo": ("post", reverse("review_api:undo", args=[slug]), None),
        "integrations:page": ("get", reverse("integrations:page", args=[slug]), None),
        "integrations:endpoint": ("form", reverse("integrations:endpoint", args=[slug, world["endpoint"].pk]),
                                  {"action": "toggle"}),
        "integrations:retry": ("form", reverse("integrations:retry", args=[slug, world["delivery"].pk]), {}),
        "integrations:import_status": ("get", reverse("integrations:import_status", args=[slug, world["s3_import"].pk]),
                                       None),
        "integrations:api_docs": ("get", reverse("integrations:api_docs"), None),
        "integrations_api:schema": ("get", reverse("integrations_api:schema"), None),
        "dashboard:dashboard": ("get", reverse("dashboard:dashboard", args=[slug]), None),
        "dashboard:plot": ("get", reverse("dashboard:plot", args=[slug, "class-shares"]), None),
        "metrics": ("get", reverse("metrics"), None),
        "admin:index": ("get", reverse("admin:index"), None),
        "admin:classify_project_change": ("get", reverse("admin:classify_project_change", args=[world["project"].pk]), None),
        "admin:classify_label_change": ("get", reverse("admin:classify_label_change",
                                                       args=[world["project"].labels.first().pk]), None),
        "admin:classify_item_change": ("get", reverse("admin:classify_item_change", args=[item.pk]), None),
        "admin:classify_modelversion_change": ("get", reverse("admin:classify_modelversion_change",
                                                              args=[world["version"].pk]), None),
        "admin:reviewer_decision_change": ("get", reverse("admin:reviewer_decision_change",
                                                          args=[world["decision"].pk]), None),
    }
    return urls[name]


def outcome(response, name: str, token: str):
    """What the role got, in the table's terms."""
    if name == "review_api:renew" and response.status_code == 200:
        return KEPT if response.json()["renewed"] == [token] else LOST
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(reverse("admin:login")):
            return ADMIN_LOGIN
        if location.startswith(reverse("login")):
            return LOGIN
    return response.status_code


def test_the_table_covers_every_named_url_of_our_apps():
    names = set()
    for namespace in OUR_NAMESPACES:
        resolver = get_resolver().namespace_dict[namespace][1]
        names |= {f"{namespace}:{name}" for name in resolver.reverse_dict if isinstance(name, str)}
    assert names <= set(MATRIX), f"add a row for {sorted(names - set(MATRIX))}"
    assert all(len(row) == len(ROLES) for row in MATRIX.values())


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_table_says(role):
    world = build_world(role)
    client = Client()
    if world["actor"] is not None:
        client.force_login(world["actor"])
    column = ROLES.index(role)
    wrong = []
    for name, row in MATRIX.items():
        method, url, body = request_for(name, world)
        if method == "upload":
            picture = SimpleUploadedFile("e.png", noisy_image((200, 40, 40), seed=7, size=(120, 100)))
            response = client.post(url, {"image": picture})
        elif method == "form":
            response = client.post(url, body)
        elif body is None:
            response = getattr(client, method)(url)
        else:
            response = client.post(url, body, content_type="application/json")
        got = outcome(response, name, str(world["leases"]["renew"]))
        if got != row[column]:
            wrong.append(f"{name}: expected {row[column]}, got {got}")
        assert response.status_code != 500, name
    assert wrong == [], f"{role}:\n" + "\n".join(wrong)
    if role == "removed member":  # nothing they sent was stored
        assert not Decision.objects.filter(reviewer=world["actor"]).exists()
