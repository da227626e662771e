from __future__ import annotations

import itertools

import pytest

from classify.models import ALLOWED_TRANSITIONS, Item
from classify.services import lifecycle
from tests.base import make_colour_project

STATUSES = list(Item.Status.values)


def make_item(project, status: str) -> Item:
    return Item.objects.create(project=project, sha256="0" * 64, width=1, height=1, status=status, image="x.jpg")


@pytest.mark.django_db
@pytest.mark.parametrize("source,target", list(itertools.product(STATUSES, STATUSES)))
def test_every_transition_is_allowed_or_refused_as_the_state_machine_says(source, target):
    item = make_item(make_colour_project(), source)
    moved = lifecycle.transition(item.pk, to=target, reason="test")
    item.refresh_from_db()
    allowed = target in ALLOWED_TRANSITIONS[source]
    assert moved is allowed
    assert item.status == (target if allowed else source)


def test_every_status_can_be_reached_and_every_transient_status_can_end():
    reachable = {target for targets in ALLOWED_TRANSITIONS.values() for target in targets}
    assert reachable | {Item.Status.RECEIVED} == set(STATUSES)
    for status in (Item.Status.RECEIVED, Item.Status.QUEUED, Item.Status.CLASSIFYING):
        assert Item.Status.FAILED in ALLOWED_TRANSITIONS[status]


def test_a_human_label_is_never_replaced_by_a_rerun():
    assert Item.Status.QUEUED not in ALLOWED_TRANSITIONS[Item.Status.REVIEWED]
