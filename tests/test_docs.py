"""The documentation stands on its own: its links lead to files in this repository, and the
README's API example uploads a file the repository ships, which the API accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from classify.auth import issue_token
from tests.base import make_colour_project, make_user

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH_IN_CODE = re.compile(r"`(\.\./[^`\s]+)`")


def test_every_link_in_the_docs_leads_to_a_file_of_the_repository():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} links to {target}"
        for target in PATH_IN_CODE.findall(text):
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} names {target}"


@pytest.mark.django_db
def test_the_readme_api_example_uploads_a_file_the_repository_ships(django_capture_on_commit_callbacks):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (shipped,) = re.findall(r"-F image=@(\S+) http://127\.0\.0\.1:8000/api/v1/projects/demo/items/", readme)
    assert (ROOT / shipped).is_file()
    user = make_user("ada")
    project = make_colour_project(slug="demo", reviewer=user)
    token = issue_token(user)
    with (ROOT / shipped).open("rb") as handle, django_capture_on_commit_callbacks(execute=True):
        response = Client().post(f"/api/v1/projects/{project.slug}/items/", {"image": handle},
                                 HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 201, response.content
    assert response.json()["filename"] == Path(shipped).name
