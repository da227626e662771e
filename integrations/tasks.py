"""Thin Celery tasks for integrations, and the only module here that publishes them.

``handle_event`` is the outbox consumer named in ``settings.LOUPE_EVENT_CONSUMERS``: it runs after
the settling transaction commits and queues ``dispatch_event``, which creates the deliveries on a
worker. Whatever cannot be published (the broker is down) stays in the
database, undispatched or pending, and ``sweep`` publishes it later: nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import shared_task
from django.conf import settings

from . import deliveries, s3import

log = logging.getLogger(__name__)


def handle_event(event_id: str) -> None:
    """Hand the event to a worker (``dispatch_event``). It runs after the settling commit, often in
    a web request (a reviewer's decision), which should not wait for the deliveries' transaction:
    one message here, the fan-out on the worker. Not queued (the broker is down): the event stays
    undispatched, and the sweeper dispatches it."""
    try:
        dispatch_event.delay(event_id)
    except Exception as exc:  # as in queue_deliveries: not queued, nothing lost
        log.warning("could not queue event %s (the sweeper will): %s", event_id, exc)


@shared_task(name="integrations.dispatch_event")
def dispatch_event(event_id: str) -> None:
    """Create the event's deliveries (once: a second call adds nothing) and queue them."""
    queue_deliveries(deliveries.fan_out(event_id))


def queue_deliveries(delivery_ids: Iterable[int], *, countdown: float = 0) -> None:
    for delivery_id in delivery_ids:
        try:
            deliver.apply_async((delivery_id,), countdown=countdown)
        except Exception as exc:  # kombu raises various connection errors; all mean "not queued"
            log.warning("could not queue delivery %s (the sweeper will): %s", delivery_id, exc)
            return


def queue_import(import_id: int) -> bool:
    try:
        run_import.delay(import_id)
    except Exception as exc:  # as above: the sweeper resumes it
        log.warning("could not queue import %s (the sweeper will): %s", import_id, exc)
        return False
    return True


@shared_task(name="integrations.deliver", soft_time_limit=120, time_limit=150)
def deliver(delivery_id: int) -> None:
    """One attempt of one delivery; a failure schedules the next attempt after its backoff."""
    delivery = deliveries.claim(delivery_id)
    if delivery is None:
        return
    wait = deliveries.attempt(delivery)
    if wait is not None:
        queue_deliveries([delivery_id], countdown=wait)


@shared_task(name="integrations.sweep")
def sweep() -> None:
    """Dispatch events whose consumer never ran, re-queue deliveries whose message was lost,
    resume imports whose runner died, forget old finished events."""
    events = deliveries.undispatched_events()
    for event_id in events:
        dispatch_event(event_id)  # here, in the sweeper's own task
    overdue = deliveries.overdue_deliveries()
    queue_deliveries(overdue)
    stalled = s3import.stalled_imports()
    for import_id in stalled:
        queue_import(import_id)
    deliveries.prune_old_events(days=settings.LOUPE_EVENT_RETENTION_DAYS)
    if events or overdue or stalled:
        log.info("integrations sweeper: %s event(s) dispatched, %s delivery(ies) and %s import(s) re-queued",
                 len(events), len(overdue), len(stalled))


@shared_task(name="integrations.run_import", soft_time_limit=12 * 3600, time_limit=12 * 3600 + 60)
def run_import(import_id: int) -> None:
    try:
        s3import.run(import_id)
    except s3import.ImportBusy:  # started again while it runs: the running one carries on
        log.info("import %s is running already", import_id)
