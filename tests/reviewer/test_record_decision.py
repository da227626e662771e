from __future__ import annotations

import pytest

from classify import services
from classify.models import Item
from reviewer.models import Decision
from reviewer.services import DecisionRefused, record_decision
from tests.base import make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db


def classified(project, rgb, capture) -> Item:
    with capture(execute=True):
        item = services.ingest_upload(project=project, data=solid_image(rgb), filename="x.png")
    item.refresh_from_db()
    return item


class RecordDecisionTests:
    def test_it_labels_an_item_and_keeps_what_the_model_said(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        reviewer = make_user("rey")
        item = classified(project, (120, 60, 60), django_capture_on_commit_callbacks)
        green = project.labels.get(name="green")
        decision = record_decision(item=item, label=green, reviewer=reviewer)
        item.refresh_from_db()
        assert (item.status, item.label, item.labelled_by) == (Item.Status.REVIEWED, green, reviewer)
        assert decision.prediction == item.predictions.get()
        assert decision.prediction.top_label == "red"

    def test_an_auto_accepted_item_can_be_corrected(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        item = classified(project, (255, 0, 0), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED
        record_decision(item=item, label=project.labels.get(name="blue"), reviewer=make_user("rey"))
        item.refresh_from_db()
        assert item.label.name == "blue" and item.status == Item.Status.REVIEWED

    def test_a_class_of_another_project_is_refused(self, django_capture_on_commit_callbacks):
        project, other = make_colour_project(), make_colour_project("other")
        item = classified(project, (120, 60, 60), django_capture_on_commit_callbacks)
        with pytest.raises(DecisionRefused, match="another project"):
            record_decision(item=item, label=other.labels.first(), reviewer=make_user("rey"))
        assert not Decision.objects.exists()

    def test_an_item_still_in_the_pipeline_is_refused(self):
        project = make_colour_project()
        item = Item.objects.create(project=project, sha256="e" * 64, width=1, height=1, status=Item.Status.QUEUED)
        with pytest.raises(DecisionRefused, match="not waiting"):
            record_decision(item=item, label=project.labels.first(), reviewer=make_user("rey"))
        item.refresh_from_db()
        assert item.status == Item.Status.QUEUED and not Decision.objects.exists()
