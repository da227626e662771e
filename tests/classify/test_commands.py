"""The management commands are a public interface: create_project, api_token, import_images, sweep."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from classify.models import ApiToken, Item, Project
from tests.base import make_user, noisy_image

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_create_project_makes_the_classes_and_unknown():
    make_user("ada")
    output = run("create_project", "fruit", "--labels", "apple, banana ,orange", "--admin", "ada")
    project = Project.objects.get(slug="fruit")
    assert "Created project fruit (local): apple, banana, orange, unknown" in output
    assert project.labels.get(name="banana").mappings["local"] == ["banana"]
    assert project.labels.filter(is_unknown=True).count() == 1
    assert project.memberships.get().user.username == "ada"


def test_create_project_refuses_bad_input():
    with pytest.raises(CommandError, match="unknown backend"):
        run("create_project", "x", "--labels", "a,b", "--backend", "nope")
    with pytest.raises(CommandError, match="distinct"):
        run("create_project", "x", "--labels", "a,a")
    run("create_project", "x", "--labels", "a,b")
    with pytest.raises(CommandError, match="could not create 'x'"):
        run("create_project", "x", "--labels", "a,b")


def test_api_token_prints_a_working_token_and_can_revoke():
    user = make_user("ada")
    run("create_project", "fruit", "--labels", "apple,banana", "--admin", "ada")
    token = run("api_token", "ada").strip()
    stored = ApiToken.objects.get(user=user)
    assert token not in stored.key_hash and stored.prefix == token[:8]
    url = reverse("api:project_items", args=["fruit"])
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    run("api_token", "ada", "--revoke-all")
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 401
    with pytest.raises(CommandError, match="no user"):
        run("api_token", "nobody")


def test_api_token_narrows_a_token_by_project_access_and_expiry():
    from datetime import timedelta

    from django.utils import timezone

    user = make_user("ada")
    run("create_project", "fruit", "--labels", "apple,banana", "--admin", "ada")
    run("create_project", "veg", "--labels", "leek,kale")
    token = run("api_token", "ada", "--name", "ci", "--project", "fruit", "--read-only", "--expires-days", "7").strip()
    stored = ApiToken.objects.get(user=user)
    assert (stored.name, stored.project.slug, stored.read_only) == ("ci", "fruit", True)
    assert timedelta(days=6) < stored.expires_at - timezone.now() <= timedelta(days=7)
    url = reverse("api:project_items", args=["fruit"])
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert Client().post(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 403
    with pytest.raises(CommandError, match="not a member"):
        run("api_token", "ada", "--project", "veg")


def test_import_images_takes_a_folder_and_reports_rejects(tmp_path, settings, django_capture_on_commit_callbacks):
    settings.LOUPE_DEFAULT_BACKEND = "colour"
    run("create_project", "colours", "--labels", "red,green", "--backend", "colour")
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(noisy_image((255, 0, 0), seed=1))
    (tmp_path / "sub" / "b.jpg").write_bytes(noisy_image((0, 255, 0), seed=2))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (tmp_path / "notes.txt").write_text("ignored")
    with django_capture_on_commit_callbacks(execute=True):
        output = run("import_images", str(tmp_path), "--project", "colours", "--no-progress")
    assert "Imported 2 image(s); 1 rejected." in output
    assert "broken.jpg" in output
    assert sorted(Item.objects.values_list("original_filename", flat=True)) == ["a.png", "b.jpg"]
    assert set(Item.objects.values_list("status", flat=True)) == {"needs_review"}  # no colours mapped


def test_import_images_explains_a_missing_project_or_folder(tmp_path):
    with pytest.raises(CommandError, match="no project"):
        run("import_images", str(tmp_path), "--project", "nope")
    run("create_project", "p", "--labels", "a,b")
    with pytest.raises(CommandError, match="is not a folder"):
        run("import_images", str(tmp_path / "missing"), "--project", "p")


def test_sweep_command_reports_what_it_did():
    assert run("sweep").strip() == "0 re-queued, 0 failed; 0 status-count rows folded."


def test_sweep_command_folds_the_status_counts():
    from django.db import connection

    from classify.models import Item, StatusCount
    from tests.base import make_colour_project, make_review_item

    project = make_colour_project()
    for n in range(3):
        make_review_item(project, sha256=f"{n:064x}")
    Item.objects.filter(project=project).update(status=Item.Status.REVIEWED)
    rows = StatusCount.objects.filter(project=project).count()
    out = run("sweep").strip()
    if connection.vendor == "postgresql":  # SQLite keeps one row per key: nothing to fold
        assert out == f"0 re-queued, 0 failed; {rows - 1} status-count rows folded."
    assert list(StatusCount.objects.filter(project=project, n__gt=0).values_list("status", "n")) == [("reviewed", 3)]


def test_ensure_admin_creates_one_admin_once(settings):
    first = run("ensure_admin")
    assert "Created admin account: username admin" in first
    assert (settings.VAR_DIR / "admin_password").read_text().strip() in first
    assert "Admin account exists" in run("ensure_admin")
