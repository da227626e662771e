"""A Hypothesis state machine of claim / decide / expire / renew / undo / skip against the
database invariants of the review queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from classify.models import Item, Membership
from reviewer import services
from reviewer.models import Decision
from tests.base import claim_next, make_colour_project, make_review_item, make_user

REVIEWERS = 3
ITEMS = 4
COUNTER = iter(range(10**9))


class ReviewQueue(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(COUNTER)
        self.project = make_colour_project(f"p{n}")
        self.items = [make_review_item(self.project, sha256=f"{n:032d}{i:032d}") for i in range(ITEMS)]
        self.reviewers = [make_user(f"u{n}-{i}") for i in range(REVIEWERS)]
        for reviewer in self.reviewers:
            Membership.objects.create(project=self.project, user=reviewer)
        self.labels = list(self.project.labels.all())
        self.leases: dict[str, tuple[int, int]] = {}  # token -> (item id, reviewer index) as we believe
        self.dead: set[str] = set()  # tokens we expect to be refused

    reviewer = st.integers(0, REVIEWERS - 1)

    @rule(who=reviewer)
    def claim(self, who):
        item = claim_next(project=self.project, reviewer=self.reviewers[who])
        if item is None:
            return
        for token, (item_id, _) in self.leases.items():
            if item_id == item.pk:
                self.dead.add(token)  # someone's old, expired lease on the same item
        self.leases[str(item.lease_token)] = (item.pk, who)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), label=st.integers(0, 3))
    def decide(self, data, label):
        token = data.draw(st.sampled_from(list(self.leases)))
        item_id, who = self.leases[token]
        try:
            services.record_decision(token=token, reviewer=self.reviewers[who], labels=[self.labels[label]])
        except services.LeaseLost:
            assert self.is_dead(token, item_id, who), "a live lease was refused"
        else:
            assert token not in self.dead, "a dead lease stored a decision"
        self.dead.add(token)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def expire(self, data):
        token = data.draw(st.sampled_from(list(self.leases)))
        Item.objects.filter(lease_token=token).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        self.dead.add(token)

    @rule(who=reviewer)
    def renew(self, who):
        mine = [token for token, (_, owner) in self.leases.items() if owner == who]
        kept = services.renew(tokens=mine, reviewer=self.reviewers[who])
        for token in kept:
            self.dead.discard(token)  # renewing a lease nobody took revives it

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def skip(self, data):
        token = data.draw(st.sampled_from(list(self.leases)))
        item_id, who = self.leases[token]
        try:
            services.skip(token=token, reviewer=self.reviewers[who])
        except services.LeaseLost:
            assert self.is_dead(token, item_id, who)
        self.dead.add(token)

    @rule(who=reviewer)
    def undo(self, who):
        try:
            item = services.undo_last(project=self.project, reviewer=self.reviewers[who])
        except services.ReviewError:
            return
        for token, (item_id, _) in self.leases.items():
            if item_id == item.pk:
                self.dead.add(token)
        self.leases[str(item.lease_token)] = (item.pk, who)

    def is_dead(self, token, item_id, who) -> bool:
        item = Item.objects.get(pk=item_id)
        live = (str(item.lease_token) == token and item.lease_owner_id == self.reviewers[who].pk
                and item.lease_expires_at and item.lease_expires_at >= timezone.now())
        return token in self.dead or not live

    @invariant()
    def every_item_agrees_with_its_decisions(self):
        for item in Item.objects.filter(project=self.project):
            live = list(Decision.objects.filter(item=item, kind=Decision.Kind.LABEL, undone=False))
            assert len({d.reviewer_id for d in live}) == len(live), "one reviewer decided an item twice"
            if item.status == Item.Status.REVIEWED:
                assert len(live) == 1 and item.label_id == live[0].label_id and item.lease_token is None
            else:
                assert item.status == Item.Status.NEEDS_REVIEW and live == [] and item.label_id is None

    @invariant()
    def a_lease_is_used_at_most_once(self):
        tokens = list(Decision.objects.filter(item__project=self.project, lease_token__isnull=False)
                      .values_list("lease_token", flat=True))
        assert len(tokens) == len(set(tokens))

    @invariant()
    def only_waiting_items_are_leased(self):
        assert not Item.objects.filter(project=self.project, lease_token__isnull=False).exclude(
            status=Item.Status.NEEDS_REVIEW).exists()


@pytest.mark.django_db
def test_the_review_queue_keeps_its_invariants():
    run_state_machine_as_test(
        ReviewQueue,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
