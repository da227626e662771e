"""The upload page in headless Chromium against a live server and a real Celery worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from classify.models import Item
from tests.base import PASSWORD, make_colour_project, make_user, solid_image

# Playwright's sync API runs an event loop in this thread; the ORM calls around it are still
# synchronous. bin/test exports this too.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's 'chromium' package to run the browser tests",
                allow_module_level=True)

pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser

# The docs' screenshots are refreshed with LOUPE_UPDATE_SCREENSHOTS=1; otherwise they go to a temp folder.
SCREENSHOT_DIR = Path(settings.BASE_DIR) / "docs" / "img" if os.environ.get("LOUPE_UPDATE_SCREENSHOTS") else None
NOT_AN_IMAGE = "The file is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)."


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def test_uploads_show_their_live_status_until_classified(page, live_server, celery_worker_process, tmp_path):
    user = make_user("uploader")
    project = make_colour_project(slug="paint", reviewer=user)
    files = {
        "red.png": (solid_image((255, 0, 0)), "Auto-accepted", "red"),
        "blue.png": (solid_image((0, 0, 255)), "Auto-accepted", "blue"),
        "murky.png": (solid_image((150, 40, 40)), "Needs review", ""),
        "notes.jpg": (b"shopping list: eggs, milk, not a photo\n", "Not accepted", ""),
    }
    for name, (data, _, _) in files.items():
        (tmp_path / name).write_bytes(data)

    log_in(page, live_server.url, "uploader")
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    page.evaluate("window.__marker = 1")  # gone if the page reloads or navigates
    page.set_input_files("#file-input", [str(tmp_path / name) for name in files])

    rows = page.locator("#uploads tbody tr")
    expect(rows).to_have_count(len(files))
    for name, (_, status, label) in files.items():
        row = rows.filter(has=page.locator("td.filename", has_text=name))
        expect(row).to_have_count(1)
        expect(row.locator('[data-field="status"]')).to_have_text(status, timeout=60_000)
        expect(row.locator('[data-field="label"]')).to_have_text(label)
    bad = rows.filter(has=page.locator("td.filename", has_text="notes.jpg"))
    expect(bad.locator('[data-field="reason"]')).to_have_text(NOT_AN_IMAGE)
    good = rows.filter(has=page.locator("td.filename", has_text="murky.png"))
    expect(good.locator('[data-field="reason"]')).to_contain_text("below its accept threshold")

    expect(page.locator("#items tbody tr")).to_have_count(3)  # the three stored uploads, no "No items"
    expect(page.locator('.tabs [data-count="auto_accepted"]')).to_have_text("2")
    expect(page.locator('.tabs [data-count="needs_review"]')).to_have_text("1")
    expect(page.locator("#review-link")).to_have_text("Review (1)")  # kept live, like the tabs

    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert page.url == f"{live_server.url}/projects/{project.slug}/"
    by_name = {item.original_filename: item for item in Item.objects.filter(project=project)}
    assert sorted(by_name) == ["blue.png", "murky.png", "red.png"]
    assert by_name["murky.png"].status == Item.Status.NEEDS_REVIEW
    assert by_name["red.png"].status == by_name["blue.png"].status == Item.Status.AUTO_ACCEPTED

    shot = (SCREENSHOT_DIR or tmp_path) / "upload.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_very_long_file_name_is_shortened_by_the_page_not_refused(page, live_server):
    user = make_user("longname")
    project = make_colour_project(slug="names", reviewer=user)
    log_in(page, live_server.url, "longname")
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    name = "holiday-" + "é" * 1200 + ".png"  # ~2,400 bytes: over Django's 1 KB part-header limit
    page.set_input_files("#file-input", [{"name": name, "mimeType": "image/png", "buffer": solid_image((255, 0, 0))}])
    row = page.locator("#uploads tbody tr")
    expect(row.locator('[data-field="status"]')).to_have_text("Auto-accepted", timeout=20_000)
    stored = Item.objects.get(project=project).original_filename
    assert stored == ("holiday-" + "é" * 1200)[:176] + ".png"


def test_an_upload_whose_answer_is_lost_is_retried_with_its_key_and_stored_once(page, live_server, tmp_path):
    """The server stores the upload but the browser never gets the answer (a dropped
    connection): the page retries with the file's Idempotency-Key and gets the first item."""
    user = make_user("uploader")
    project = make_colour_project(slug="paint", reviewer=user)
    (tmp_path / "red.png").write_bytes(solid_image((255, 0, 0)))
    keys = []

    def lose_the_first_answer(route):
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # reaches the server, which stores the upload
            route.abort("connectionreset")
        else:
            route.continue_()

    log_in(page, live_server.url, "uploader")
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    page.route(f"**/api/v1/projects/{project.slug}/items/", lambda route: (
        lose_the_first_answer(route) if route.request.method == "POST" else route.continue_()))
    page.set_input_files("#file-input", [str(tmp_path / "red.png")])

    row = page.locator("#uploads tbody tr")
    expect(row.locator('[data-field="status"]')).to_have_text("Auto-accepted", timeout=30_000)
    expect(page.locator("#items tbody tr")).to_have_count(1)
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    assert Item.objects.filter(project=project).count() == 1
