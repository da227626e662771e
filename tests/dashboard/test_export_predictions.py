"""manage.py export_predictions: every prediction with scores, thresholds, model version, final label."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from classify.models import Prediction
from tests.base import make_colour_project
from tests.dashboard.helpers import seed_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = make_colour_project()
    now = timezone.now()
    seed_item(project, at=now - timedelta(days=10), top_label="red", top_score=0.7, label="blue")
    seed_item(project, at=now - timedelta(hours=3), top_label="red", top_score=0.95,
              decision=Prediction.Decision.AUTO_ACCEPTED)
    seed_item(project, at=now - timedelta(hours=1), top_label="green", top_score=0.5)
    Prediction.objects.update(thresholds={"red": {"threshold": 0.8, "margin": 0.0}})
    return project


def run(*args) -> str:
    out = io.StringIO()
    call_command("export_predictions", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


class ExportPredictionsTests:
    def test_json_lines_carry_scores_thresholds_model_version_and_the_final_label(self, project):
        rows = [json.loads(line) for line in run("--project", "colours").splitlines()]
        assert [row["top_label"] for row in rows] == ["red", "red", "green"]
        human, auto, waiting = rows
        assert human["final_label"] == human["human_label"] == "blue" and human["final_by"] == "human"
        assert auto["final_label"] == "red" and auto["final_by"] == "auto" and auto["human_label"] is None
        assert waiting["final_label"] is None and waiting["item_status"] == "needs_review"
        assert human["scores"] == {"red": 0.7} and human["thresholds"]["red"]["threshold"] == 0.8
        assert human["model_version"] == "v1"

    def test_since_keeps_only_newer_predictions(self, project):
        assert len(run("--project", "colours", "--since", "3d").splitlines()) == 2
        assert len(run("--project", "colours", "--since", "2h").splitlines()) == 1
        day = (timezone.now() - timedelta(days=20)).date().isoformat()
        assert len(run("--project", "colours", "--since", day).splitlines()) == 3

    def test_csv_has_a_column_per_class_for_scores_and_thresholds(self, project):
        rows = list(csv.DictReader(io.StringIO(run("--project", "colours", "--format", "csv"))))
        assert len(rows) == 3
        assert rows[0]["score:red"] == "0.7" and rows[0]["score:green"] == ""
        assert rows[0]["threshold:red"] == "0.8" and rows[0]["human_label"] == "blue"
        assert rows[1]["final_by"] == "auto" and rows[1]["reused"] == "false"

    def test_it_refuses_an_unknown_project_or_a_bad_since(self, project):
        with pytest.raises(CommandError, match="no project"):
            run("--project", "nope")
        with pytest.raises(CommandError, match="--since"):
            run("--project", "colours", "--since", "yesterday-ish")
