"""The OpenAPI description matches the code: it lists every /api/v1/ route (and no other), and a
real response of every operation (errors included) validates against it."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIResponse
from openapi_core.testing import MockRequest
from openapi_spec_validator import validate

from classify.auth import issue_token
from integrations import openapi
from tests.base import make_colour_project, make_review_item, make_user, solid_image

pytestmark = pytest.mark.django_db
METHODS = {"get", "post", "put", "patch", "delete"}


def django_api_routes() -> set[str]:
    """Every route Django resolves under /api/v1/, as OpenAPI paths (/api/v1/items/{item_id}/)."""
    found = set()

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                found.add("/" + prefix + str(entry.pattern))

    walk(get_resolver().url_patterns, "")
    return {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route) for route in found if route.startswith("/api/v1/")}


def test_the_description_is_valid_openapi_and_lists_every_api_route():
    validate(openapi.schema())
    assert set(openapi.PATHS) == django_api_routes()


class Recorder:
    """Sends requests and validates each response against the description; remembers what it saw."""

    def __init__(self) -> None:
        self.api = OpenAPI.from_dict(openapi.schema())
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, response):
        """Validate the response (status, content type, body) for the operation that answered it."""
        request = response.wsgi_request
        route = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", request.resolver_match.route)
        described = MockRequest("http://testserver", request.method.lower(), request.path, path_pattern=route,
                                view_args=request.resolver_match.kwargs, args=request.GET.dict(),
                                headers={"Authorization": request.headers.get("Authorization", "")})
        self.api.validate_response(described, DjangoOpenAPIResponse(response))
        self.seen.add((route, request.method.lower(), response.status_code))
        return response


@pytest.fixture
def team():
    admin, reviewer = make_user("ada"), make_user("rex")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    return project, admin, reviewer


def test_a_response_of_every_operation_validates_against_the_description(team, django_capture_on_commit_callbacks):
    project, admin, reviewer = team
    rec, slug = Recorder(), project.slug
    token = Client(HTTP_AUTHORIZATION=f"Token {issue_token(admin)}")
    anonymous = Client()
    session = Client(enforce_csrf_checks=True)
    session.force_login(admin)

    def post_json(path, body, client=token):
        return rec.check(client.post(path, json.dumps(body), content_type="application/json"))

    items = f"/api/v1/projects/{slug}/items/"
    rec.check(token.get(items))
    rec.check(token.get(items, {"status": "nonsense"}))
    rec.check(token.get("/api/v1/projects/nope/items/"))
    rec.check(anonymous.get(items))
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = rec.check(token.post(items, {"image": _file(solid_image((250, 5, 5)))}))
    rec.check(token.post(items, {}))
    rec.check(session.post(items, {"image": _file(solid_image((250, 5, 5)))}))  # no CSRF token: 403
    detail = rec.check(token.get(f"/api/v1/items/{uploaded.json()['id']}/")).json()
    assert detail["status"] == "auto_accepted" and detail["decision"]["top_label"] == "red"  # the full shape
    rec.check(token.get("/api/v1/items/999999/"))

    review = f"/api/v1/projects/{slug}/review/"
    rec.check(token.post(review + "claim/"))  # empty queue: 204
    for n in range(6):
        make_review_item(project, {"red": 0.5, "green": 0.3, "blue": 0.1, "unknown": 0.1}, sha256=f"{n:064d}")
    rec.check(token.post(review + "claim/", QUERY_STRING="count=x"))
    claim = rec.check(token.post(review + "claim/")).json()
    lease = claim["lease"]["token"]
    rec.check(token.post(review + "claim/?count=2"))
    rec.check(token.get(review + "stats/"))
    rec.check(token.get(f"/api/v1/projects/{slug}/learning/"))
    post_json("/api/v1/reviews/renew/", {"tokens": [lease, "gone"]})
    post_json(f"/api/v1/reviews/{lease}/decision/", {"labels": ["purple"]})
    post_json(f"/api/v1/reviews/{lease}/decision/", {"labels": ["red"], "seconds_spent": 1.5})
    post_json(f"/api/v1/reviews/{lease}/decision/", {"labels": ["red"]})  # used: 409
    rec.check(token.post(review + "undo/"))
    rec.check(token.post(review + "undo/"))  # nothing more to undo: 400
    post_json(review + "grid/claim/", {"label": "red"})
    post_json(review + "grid/claim/", {"label": "blue"})  # nothing the model put in blue: 204
    post_json(review + "grid/claim/", {"exclude": "x"})
    for n in range(6, 8):  # the admin holds every earlier item now
        make_review_item(project, {"red": 0.5, "green": 0.3, "blue": 0.1, "unknown": 0.1}, sha256=f"{n:064d}")
    reviewer_client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(reviewer)}")
    second = rec.check(reviewer_client.post(review + "claim/")).json()
    rec.check(reviewer_client.post(f"/api/v1/reviews/{second['lease']['token']}/skip/"))
    rec.check(reviewer_client.post(f"/api/v1/reviews/{second['lease']['token']}/skip/"))  # 409
    third = rec.check(reviewer_client.post(review + "claim/")).json()
    rec.check(reviewer_client.post(f"/api/v1/reviews/{third['lease']['token']}/release/"))
    rec.check(reviewer_client.post(f"/api/v1/reviews/{third['lease']['token']}/release/"))  # 409
    rec.check(token.get("/api/v1/schema/"))

    red = project.labels.get(name="red")
    classes = f"/api/v1/projects/{slug}/classes/"
    added = rec.check(token.post(f"{classes}{red.pk}/exemplars/", {"image": _file(solid_image((250, 5, 5)))}))
    rec.check(token.post(f"{classes}{red.pk}/exemplars/", {"image": _file(b"not an image")}))
    rec.check(token.post(f"{classes}999999/exemplars/", {"image": _file(solid_image((250, 5, 5)))}))
    rec.check(reviewer_client.post(f"{classes}{red.pk}/exemplars/", {"image": _file(solid_image((250, 5, 5)))}))
    rec.check(reviewer_client.delete(f"/api/v1/exemplars/{added.json()['id']}/"))
    rec.check(token.delete(f"/api/v1/exemplars/{added.json()['id']}/"))
    rec.check(token.delete(f"/api/v1/exemplars/{added.json()['id']}/"))  # gone: 404

    operations = {(path, method) for path, item in openapi.PATHS.items() for method in item if method in METHODS}
    assert operations == {(path, method) for path, method, _ in rec.seen}
    success = {(path, method) for path, method, status in rec.seen if status < 300}
    assert success == operations  # each one's success answer was checked, not only its errors


def test_a_response_that_breaks_the_description_fails_validation(team):
    """The validator is not a rubber stamp: an item without its status fails."""
    project, admin, _ = team
    rec = Recorder()
    item = make_review_item(project)
    response = Client(HTTP_AUTHORIZATION=f"Token {issue_token(admin)}").get(f"/api/v1/items/{item.pk}/")
    body = response.json()
    del body["status"]
    response.content = json.dumps(body).encode()
    with pytest.raises(Exception, match="status|Invalid"):
        rec.check(response)


def test_the_reference_page_lists_every_operation(team):
    _, _, reviewer = team
    client = Client()
    client.force_login(reviewer)  # everyone logged in
    page = client.get("/api/docs/").content.decode()
    for path, item in openapi.PATHS.items():
        for method in item.keys() & METHODS:
            assert f"{method.upper()} {path}" in page
    assert "<script" not in page  # server-rendered: nothing fetched from anywhere
    assert Client().get("/api/docs/").status_code == 302  # to the login page


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("red.png", data, content_type="image/png")
