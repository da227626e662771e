"""Many reviewers at once, on real connections (transactional database, PostgreSQL in CI):
no item is held by two reviewers, no decision is lost or doubled."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from classify.models import Item, Membership
from reviewer import services
from reviewer.models import Decision
from tests.base import claim_next, make_colour_project, make_review_item, make_user

THREADS = 16


def run_in_threads(work, count: int = THREADS) -> list:
    """Start ``count`` threads together (a barrier) and collect their results or errors."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # reported by the test, not lost in the thread
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_sixteen_reviewers_drain_the_queue_without_collisions():
    project = make_colour_project()
    items = [make_review_item(project) for _ in range(80)]
    red = project.labels.get(name="red")
    reviewers = [make_user(f"r{index}") for index in range(THREADS)]
    for reviewer in reviewers:
        Membership.objects.create(project=project, user=reviewer)

    def review(index: int) -> list[int]:
        done = []
        while (item := claim_next(project=project, reviewer=reviewers[index])) is not None:
            services.record_decision(token=str(item.lease_token), reviewer=reviewers[index], labels=[red])
            done.append(item.pk)
        return done

    results = run_in_threads(review)
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    decided = Counter(pk for result in results for pk in result)
    assert set(decided) == {item.pk for item in items}
    assert max(decided.values()) == 1  # nobody reviewed an item somebody else had
    assert Decision.objects.count() == len(items)
    assert not Item.objects.exclude(status=Item.Status.REVIEWED).exists()
    assert sum(1 for result in results if result) > 1  # the work really was shared
    print(f"{connection.vendor}: {dict(Counter(len(r) for r in results))}")


@pytest.mark.django_db(transaction=True)
def test_sixteen_submits_of_one_lease_store_one_decision():
    project = make_colour_project()
    make_review_item(project)
    reviewer = make_user("rey")
    Membership.objects.create(project=project, user=reviewer)
    token = str(claim_next(project=project, reviewer=reviewer).lease_token)
    red = project.labels.get(name="red")

    def submit(_index: int):
        return services.record_decision(token=token, reviewer=reviewer, labels=[red])

    results = run_in_threads(submit)
    stored = [r for r in results if isinstance(r, Decision)]
    refused = [r for r in results if isinstance(r, services.LeaseLost)]
    assert len(stored) == 1 and len(refused) == THREADS - 1, results
    assert Decision.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_sixteen_reviewers_claiming_grids_never_share_an_item():
    project = make_colour_project()
    items = [make_review_item(project, {"red": 0.6, "green": 0.2, "blue": 0.1, "unknown": 0.1}) for _ in range(60)]
    reviewers = [make_user(f"g{index}") for index in range(THREADS)]
    for reviewer in reviewers:
        Membership.objects.create(project=project, user=reviewer)

    results = run_in_threads(lambda index: [item.pk for item in services.claim_many(
        project=project, reviewer=reviewers[index], limit=6, top_label="red")])
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    claimed = [pk for result in results for pk in result]
    assert len(claimed) == len(set(claimed)) == min(len(items), THREADS * 6)
