"""The dashboard in headless Chromium: every plot of a seeded project renders, with its table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from classify.models import Membership
from dashboard import selectors
from dashboard.services.drift import check_drift
from dashboard.services.rollups import refresh_rollups
from tests.base import PASSWORD, make_colour_project, make_user, solid_image
from tests.dashboard.helpers import seed_week

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's 'chromium' package to run the browser tests",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
IMG = Path(settings.BASE_DIR) / "docs" / "img" if os.environ.get("LOUPE_UPDATE_SCREENSHOTS") else None


def test_the_dashboard_renders_every_plot_of_a_seeded_project(page, live_server, tmp_path):
    reviewers = [make_user(name) for name in ("rey", "sam", "kim")]
    project = make_colour_project(slug="paint")
    Membership.objects.bulk_create(Membership(project=project, user=user) for user in reviewers)
    default_storage.save("items/none.jpg", ContentFile(solid_image((200, 60, 60), fmt="JPEG")))  # the thumbnails
    now = timezone.now()
    seed_week(project, reviewers, now=now)
    refresh_rollups(since=now - timezone.timedelta(days=8))
    assert [alarm.label for alarm in check_drift(now=now)]  # the last day leans towards red

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "rey")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.goto(f"{live_server.url}/projects/paint/")
    page.click("text=Dashboard")

    figures = page.locator("figure.plot")
    expect(figures).to_have_count(len(selectors.PLOTS))
    expect(page.locator("figure.plot.loaded")).to_have_count(len(selectors.PLOTS))
    for name in selectors.PLOTS:
        figure = page.locator(f"#plot-{name}")
        expect(figure.locator("svg.chart").first).to_be_visible()
        expect(figure.locator("h3")).not_to_be_empty()
        assert figure.locator(".error").count() == 0, name
        assert figure.locator("svg.chart .chart-empty").count() == 0, f"{name} drew no data"
        assert figure.locator("table tbody tr").count() > 0, name
    expect(page.locator("#plot-class-shares .alert", has_text="Drift alarm: red had")).to_have_count(1)
    page.locator("#plot-audit-precision summary").click()
    expect(page.locator("#plot-audit-precision table")).to_be_visible()
    csv_link = "/projects/paint/dashboard/plots/audit-precision/?days=7&format=csv"
    expect(page.locator("#plot-audit-precision a.csv")).to_have_attribute("href", csv_link)

    shot = (IMG or tmp_path) / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
