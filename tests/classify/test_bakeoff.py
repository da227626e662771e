"""The backend bake-off: metrics, the service, the command and the page."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from classify import bakeoff
from classify.bakeoff import Outcome, metrics
from classify.models import BakeoffRun, Item
from classify.services import intake
from tests.base import COLOURS, make_colour_project, make_user, noisy_image

RGB = {"red": (240, 10, 10), "green": (10, 240, 10), "blue": (10, 10, 240)}


def test_metrics_from_known_outcomes():
    outcomes = [
        Outcome("cat", "cat", True, 10, 0.001), Outcome("cat", "cat", False, 20, 0.001),
        Outcome("cat", "dog", True, 30, 0.001), Outcome("dog", "dog", True, 40, 0.001),
        Outcome("dog", None),
    ]
    report = metrics("x", outcomes)
    assert (report.images, report.errors) == (5, 1)
    assert report.accuracy == 0.75
    assert report.per_class["cat"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert report.per_class["dog"]["precision"] == 0.5 and report.per_class["dog"]["recall"] == 1.0
    assert report.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)
    assert report.auto_accept_share == 0.75 and report.auto_accept_precision == pytest.approx(2 / 3)
    assert (report.latency_p50_ms, report.latency_p95_ms) == (30, 40)
    assert report.cost_per_1000_usd == pytest.approx(1.0)


def test_metrics_of_a_backend_that_failed_everywhere():
    report = metrics("x", [Outcome("cat", None)], first_error="boom")
    assert report.accuracy is None and report.errors == 1 and report.first_error == "boom"


@pytest.fixture
def labelled(django_capture_on_commit_callbacks):
    admin = make_user("ada", is_staff=True)
    reviewer = make_user("rey")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    truth = {}
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(9):
            name = list(COLOURS)[n % 3]
            item = intake.ingest_upload(project=project, data=noisy_image(RGB[name], seed=n), filename=f"{n}.png")
            truth[item.pk] = project.labels.get(name=name)
    for pk, label in truth.items():  # as if people had confirmed them
        Item.objects.filter(pk=pk).update(status=Item.Status.REVIEWED, label=label)
    return project, admin, reviewer


@pytest.mark.django_db
def test_the_bakeoff_compares_backends_on_human_labels(labelled):
    project, *_ = labelled
    reports = {r.backend: r for r in bakeoff.score_backends(project=project, backends=["colour", "local", "nonesuch"],
                                                           configs={"local": {"mode": "zero_shot"}})}
    assert reports["colour"].accuracy == 1.0 and reports["colour"].macro_f1 == 1.0 and reports["colour"].images == 9
    assert reports["colour"].auto_accept_share == 1.0 and reports["colour"].auto_accept_precision == 1.0
    assert reports["local"].accuracy == 0.0  # no ImageNet mapping: everything scores unknown
    assert reports["local"].model_version.startswith("efficientnet-lite0-imagenet/zero-shot")
    assert reports["nonesuch"].errors == 9 and "no backend called" in reports["nonesuch"].first_error


@pytest.mark.django_db
def test_the_bakeoff_can_score_a_seeded_sample(labelled):
    project, *_ = labelled
    first = bakeoff.score_backends(project=project, backends=["colour"], sample=4, seed=3)[0]
    again = bakeoff.score_backends(project=project, backends=["colour"], sample=4, seed=3)[0]
    assert first.images == 4 and first.per_class == again.per_class


@pytest.mark.django_db
def test_the_command_prints_the_comparison(labelled):
    project, *_ = labelled
    out = io.StringIO()
    call_command("bakeoff", "--project", project.slug, "--backends", "colour,local",
                 "--config", 'local={"mode": "zero_shot"}', stdout=out)
    text = out.getvalue()
    assert text.splitlines()[0].split()[:4] == ["backend", "images", "errors", "accuracy"]
    assert re.search(r"^colour\s+9\s+0\s+1\.000\s+1\.000\s+100\.0%", text, re.M), text
    assert BakeoffRun.objects.get().state == BakeoffRun.State.DONE
    with pytest.raises(CommandError, match="unknown backend"):
        call_command("bakeoff", "--project", project.slug, "--backends", "bogus")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("bakeoff", "--project", project.slug, "--backends", "colour", "--config", "colour={")


@pytest.mark.django_db
def test_the_page_runs_a_bakeoff_for_project_admins_only(labelled, django_capture_on_commit_callbacks):
    project, admin, reviewer = labelled
    url = reverse("classify:backends", args=[project.slug])
    client = Client()
    client.force_login(reviewer)
    assert client.get(url).status_code == 403
    client.force_login(admin)
    page = client.get(url).content.decode()
    assert "Cost per day" in page and "Bake-off" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"backends": ["colour"], "sample": "", "configs": ""})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert "Bake-off #" in page and "Done" in page and "100.0%" in page
    bad = client.post(url, {"backends": ["colour"], "configs": "[1]"})
    assert bad.status_code == 200 and "Give an object of objects" in bad.content.decode()


@pytest.mark.django_db
def test_costs_are_totalled_per_day(labelled):
    from classify import selectors
    from classify.models import Prediction

    project, *_ = labelled
    Prediction.objects.filter(item__project=project).update(cost_usd="0.001")
    (today,) = selectors.cost_by_day(project)
    assert today["predictions"] == 9 and float(today["cost"]) == pytest.approx(0.009)
    assert selectors.cost_totals(project)["predictions"] == 9
