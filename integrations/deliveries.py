"""Endpoints and deliveries: at least once, retried with backoff, logged.

A webhook gets the event as signed JSON (``signing``) through ``outbound`` (no private
addresses); a results-to-S3 endpoint gets each settled item's result file (``results``).

A delivery is claimed with a conditional UPDATE (its next attempt moves into the future while
one worker tries it), so a retry message and a sweeper message never send the same attempt
twice; a worker that dies mid-attempt leaves a claim that runs out, and the sweeper retries.
The event id travels in the body and the ``Loupe-Event-Id`` header for receivers to deduplicate.
"""

from __future__ import annotations

import json
import random
import time
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classify.models import Event, Project

from . import outbound, results, signing
from .models import Delivery, Endpoint

LOG_LENGTH = 10
USER_AGENT = "Loupe-Webhooks/1"
State = Delivery.State


def create_endpoint(*, project: Project, url: str, description: str = "", event_types=(), user=None) -> Endpoint:
    """A new endpoint: a webhook (https, not a private or loopback address) or, for an
    ``s3://`` URL, results to S3 (inside the project's allowed S3 location)."""
    if url.startswith("s3://"):
        bucket, prefix = results.check_location(project, url)
        kind, url = Endpoint.Kind.RESULTS_S3, f"s3://{bucket}/{prefix}"
    else:
        kind = Endpoint.Kind.WEBHOOK
        outbound.check_url(url)
    return Endpoint.objects.create(project=project, kind=kind, url=url, description=description,
                                   event_types=list(event_types), created_by=user)


def event_body(event: Event) -> bytes:
    """What receivers get: the event id (for deduplication), its type, when, the project, data."""
    return json.dumps({
        "id": str(event.pk), "type": event.type, "created_at": event.created_at.isoformat(),
        "project": event.project.slug, "data": event.data,
    }, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def fan_out(event_id: str) -> list[int]:
    """Give an undispatched event one pending delivery per active endpoint of its project that
    wants its type, and mark it dispatched, in one transaction. Returns the new deliveries' ids
    (none when the event was dispatched already: a second call adds nothing)."""
    with transaction.atomic():
        event = Event.objects.select_for_update().filter(pk=event_id, dispatched_at__isnull=True).first()
        if event is None:
            return []
        endpoints = [e for e in Endpoint.objects.filter(project_id=event.project_id, is_active=True)
                     if e.wants(event.type)]
        created = Delivery.objects.bulk_create(
            [Delivery(endpoint=endpoint, event=event, next_attempt_at=timezone.now()) for endpoint in endpoints])
        Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now())
    return [delivery.pk for delivery in created]


def undispatched_events(*, older_than: float = 30, limit: int = 500) -> list[str]:
    """Events whose consumer never ran (the process died after the commit, say)."""
    late = timezone.now() - timedelta(seconds=older_than)
    return [str(pk) for pk in Event.objects.filter(dispatched_at__isnull=True, created_at__lt=late)
            .order_by("created_at").values_list("pk", flat=True)[:limit]]


def send_test_event(*, endpoint: Endpoint, user) -> Delivery:
    """A ``ping`` event to this endpoint only, delivered like any other."""
    with transaction.atomic():
        event = Event.objects.create(project=endpoint.project, type=Event.Type.PING, dispatched_at=timezone.now(),
                                     data={"message": "A test event from Loupe.", "sent_by": user.get_username(),
                                           "endpoint": endpoint.url})
        return Delivery.objects.create(endpoint=endpoint, event=event, next_attempt_at=timezone.now())


def claim(delivery_id: int) -> Delivery | None:
    """Take a due delivery for one attempt, or None (delivered, gone, another worker has it, or
    its endpoint is paused: it waits, pending, until the endpoint is resumed)."""
    now = timezone.now()
    hold = now + timedelta(seconds=settings.LOUPE_WEBHOOK_TIMEOUT * 3 + 30)
    claimed = Delivery.objects.filter(pk=delivery_id, state=State.PENDING, next_attempt_at__lte=now,
                                      endpoint__is_active=True).update(next_attempt_at=hold, attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Delivery.objects.select_related("endpoint", "event__project").get(pk=delivery_id)


def post_webhook(delivery: Delivery) -> outbound.Response:
    """POST the signed event to the endpoint's URL."""
    body = event_body(delivery.event)
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        signing.HEADER: signing.sign(delivery.endpoint.secret, body),
        "Loupe-Event-Id": str(delivery.event_id), "Loupe-Event-Type": delivery.event.type,
        "Loupe-Delivery-Attempt": str(delivery.attempts),
    }
    return outbound.post(delivery.endpoint.url, body, headers, timeout=settings.LOUPE_WEBHOOK_TIMEOUT)


SENDERS = {Endpoint.Kind.WEBHOOK: post_webhook, Endpoint.Kind.RESULTS_S3: results.write}


def attempt(delivery: Delivery) -> float | None:
    """Send a claimed delivery once and record the outcome. Returns the seconds to wait before
    the next attempt, or None when the delivery is finished (delivered, or given up)."""
    started = time.monotonic()
    status, error, text, final = None, "", "", False
    try:
        response = SENDERS[delivery.endpoint.kind](delivery)
        status, text = response.status, response.text
        if not 200 <= status < 300:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    except outbound.Refused as exc:
        error, final = str(exc), True
    except Exception as exc:  # timeouts, refused connections, TLS, DNS and S3 errors: worth retrying
        error = f"{exc.__class__.__name__}: {exc}"
    entry = {"at": timezone.now().isoformat(), "attempt": delivery.attempts, "status": status, "error": error[:300],
             "response": text, "ms": round((time.monotonic() - started) * 1000)}
    return _record(delivery, entry, delivered=not error, give_up=final)


def _record(delivery: Delivery, entry: dict, *, delivered: bool, give_up: bool) -> float | None:
    now = timezone.now()
    fields = {"last_status_code": entry["status"], "last_error": entry["error"],
              "log": ([entry] + list(delivery.log))[:LOG_LENGTH]}
    wait = None
    if delivered:
        fields.update(state=State.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif give_up or delivery.attempts >= settings.LOUPE_WEBHOOK_MAX_ATTEMPTS:
        fields.update(state=State.FAILED, next_attempt_at=None)
    else:
        wait = backoff(delivery.attempts)
        fields.update(next_attempt_at=now + timedelta(seconds=wait))
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    return wait


def backoff(attempts: int) -> float:
    """Exponential (base ``LOUPE_WEBHOOK_BACKOFF_SECONDS``), capped, with jitter so a receiver
    that comes back is not hit by every retry at the same second."""
    ceiling = min(settings.LOUPE_WEBHOOK_BACKOFF_MAX_SECONDS, settings.LOUPE_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


def set_active(*, endpoint: Endpoint, active: bool) -> list[int]:
    """Pause or resume an endpoint. Resuming makes its waiting deliveries due now and returns
    their ids (to queue them)."""
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=active)
    if not active:
        return []
    waiting = Delivery.objects.filter(endpoint=endpoint, state=State.PENDING)
    ids = list(waiting.values_list("pk", flat=True))
    waiting.update(next_attempt_at=timezone.now())
    return ids


def retry_now(*, delivery: Delivery) -> bool:
    """A project admin's "retry": a failed (or waiting) delivery gets a fresh round of attempts."""
    return bool(Delivery.objects.filter(pk=delivery.pk, state__in=[State.FAILED, State.PENDING]).update(
        state=State.PENDING, attempts=0, next_attempt_at=timezone.now()))


def overdue_deliveries(*, limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is more than a minute late (a lost message)."""
    late = timezone.now() - timedelta(seconds=60)
    return list(Delivery.objects.filter(state=State.PENDING, next_attempt_at__lt=late, endpoint__is_active=True)
                .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def prune_old_events(*, days: int) -> int:
    """Delete events (with their deliveries and logs) older than ``days`` once nothing about them
    is pending: the log shows recent history, not all of it. Returns how many went."""
    cutoff = timezone.now() - timedelta(days=days)
    finished = Event.objects.filter(created_at__lt=cutoff, dispatched_at__isnull=False).exclude(
        deliveries__state=State.PENDING)
    deleted, _ = Event.objects.filter(pk__in=list(finished.values_list("pk", flat=True)[:5000])).delete()
    return deleted
