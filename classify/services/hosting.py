"""Custom Labels models Loupe started: stopped when idle, started again when work arrives.

A Rekognition Custom Labels model bills per inference-unit hour while it runs, busy or not. Loupe
tracks every model version it starts (``HostedModel``): the sweeper calls ``StopProjectVersion``
once one has had no work for ``LOUPE_MODEL_IDLE_MINUTES`` and nothing is queued for it; an item
that arrives for a stopped model calls ``StartProjectVersion`` and waits, queued with the reason
"starting the model, about N minutes", while ``DescribeProjectVersions`` is polled with backoff
(one poll per interval for the whole model, however many items wait). A model Loupe did not start
is never touched.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from classify import aws
from classify.backends import BackendError
from classify.models import HostedModel, Item, Project, TrainingRun

log = logging.getLogger(__name__)
SERVICE = "rekognition"
State = HostedModel.State
CHECK_FIRST_SECONDS = 30
CHECK_MAX_SECONDS = 300
WAITING = [Item.Status.RECEIVED, Item.Status.QUEUED, Item.Status.CLASSIFYING]
FAILED_STATUSES = {"FAILED", "TRAINING_FAILED", "DEPRECATED", "EXPIRED", "STOPPED"}


class ModelStarting(Exception):
    """The item's model is starting: put the item back in the queue and try after ``countdown`` s."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.reason, self.countdown = reason, countdown


def region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _call(row: HostedModel, operation: str, **params) -> dict:
    client = aws.lazy_client(SERVICE, row.region or region_of(row.project_version_arn) or None)
    return aws.call(SERVICE, getattr(client, operation), **params)


def track_started(project: Project, arn: str, *, region: str = "", units: int = 1) -> HostedModel:
    """Record that Loupe just called ``StartProjectVersion`` for ``arn`` (a training run's candidate)."""
    now = timezone.now()
    row, created = HostedModel.objects.get_or_create(
        project=project, project_version_arn=arn,
        defaults={"region": region or region_of(arn), "state": State.STARTING, "started_at": now,
                  "last_used_at": now, "next_check_at": now, "min_inference_units": units})
    if not created and row.state in (State.STOPPED, State.FAILED):
        HostedModel.objects.filter(pk=row.pk).update(state=State.STARTING, started_at=now, last_used_at=now,
                                                     next_check_at=now, checks=0, status_message="")
    return row


def mark_running(project: Project, arn: str) -> None:
    """A training run saw its candidate RUNNING: the idle clock starts now."""
    now = timezone.now()
    HostedModel.objects.filter(project=project, project_version_arn=arn).update(
        state=State.RUNNING, last_used_at=now, next_check_at=None, checks=0, status_message="")


def ensure_running(project: Project, arn: str) -> None:
    """Before a Custom Labels call for ``arn``: nothing if Loupe does not track it or it runs (the
    idle clock is reset); otherwise start it or check on it, and raise ``ModelStarting``. A model
    that fails to start is a non-retryable ``BackendError`` with Rekognition's reason."""
    row = HostedModel.objects.filter(project=project, project_version_arn=arn).first()
    if row is None:
        return
    now = timezone.now()
    if row.state == State.RUNNING:
        HostedModel.objects.filter(pk=row.pk, last_used_at__lt=now - timedelta(seconds=30)).update(last_used_at=now)
        return
    if row.state in (State.STOPPED, State.FAILED):
        _start(row, now)
    elif row.next_check_at is None or row.next_check_at <= now:
        _check(row, now)
        if row.state == State.RUNNING:
            return
    raise ModelStarting(starting_reason(row, now), countdown=max(1.0, (row.next_check_at - now).total_seconds()))


def _start(row: HostedModel, now) -> None:
    """Call StartProjectVersion, once: only the caller whose conditional UPDATE wins calls it."""
    first_check = now + timedelta(seconds=CHECK_FIRST_SECONDS)
    if not HostedModel.objects.filter(pk=row.pk, state__in=[State.STOPPED, State.FAILED]).update(
            state=State.STARTING, started_at=now, last_used_at=now, next_check_at=first_check, checks=0,
            status_message=""):
        row.refresh_from_db()
        return
    try:
        _call(row, "start_project_version", ProjectVersionArn=row.project_version_arn,
              MinInferenceUnits=row.min_inference_units)
    except BackendError as exc:
        if "ResourceInUseException" not in str(exc):  # in use: it is starting or running already
            HostedModel.objects.filter(pk=row.pk).update(state=State.STOPPED, started_at=None, status_message=str(exc)[:500])
            raise
    log.info("started Custom Labels model %s for project %s", row.project_version_arn, row.project_id)
    row.refresh_from_db()


def _check(row: HostedModel, now) -> None:
    """One DescribeProjectVersions for a starting model; the next check backs off (30 s, 60 s, … 5 min)."""
    delay = min(CHECK_MAX_SECONDS, CHECK_FIRST_SECONDS * 2 ** min(row.checks + 1, 10))
    if not HostedModel.objects.filter(pk=row.pk, state=State.STARTING, next_check_at=row.next_check_at).update(
            next_check_at=now + timedelta(seconds=delay), checks=row.checks + 1):
        row.refresh_from_db()  # another worker checks this time
        return
    parts = row.project_version_arn.split("/")
    project_arn = "/".join(parts[:2])
    response = _call(row, "describe_project_versions", ProjectArn=project_arn, VersionNames=[parts[3]])
    found = response.get("ProjectVersionDescriptions") or []
    status = found[0].get("Status", "") if found else "missing"
    if status == "RUNNING":
        HostedModel.objects.filter(pk=row.pk).update(state=State.RUNNING, last_used_at=now, next_check_at=None,
                                                     checks=0, status_message="")
    elif status in FAILED_STATUSES or status == "missing":
        message = (found[0].get("StatusMessage") if found else "") or "no reason given"
        reason = f"The Custom Labels model did not start ({status}): {message}"
        HostedModel.objects.filter(pk=row.pk).update(state=State.FAILED, status_message=reason[:500])
        raise BackendError(reason, retryable=False)
    row.refresh_from_db()


def starting_reason(row: HostedModel, now) -> str:
    """The one wording of an item waiting for its model, with Loupe's estimate of the time left."""
    expected = (row.started_at or now) + timedelta(minutes=settings.LOUPE_MODEL_START_MINUTES)
    minutes = max(1, math.ceil((expected - now).total_seconds() / 60))
    return f"Waiting: starting the model, about {minutes} minute{'s' if minutes != 1 else ''}."


def has_work(row: HostedModel) -> bool:
    """Items waiting for this model (pinned to it, or not pinned yet in a project that uses it),
    or an open training run comparing it."""
    items = Item.objects.filter(project_id=row.project_id, status__in=WAITING).filter(
        Q(backend_config__project_version_arn=row.project_version_arn)
        | Q(backend="", project__backend="custom_labels",
            project__backend_config__project_version_arn=row.project_version_arn))
    runs = TrainingRun.objects.filter(project_id=row.project_id, aws__project_version_arn=row.project_version_arn,
                                      state__in=[TrainingRun.State.QUEUED, TrainingRun.State.RUNNING])
    return items.exists() or runs.exists()


def stop(row: HostedModel, *, why: str) -> bool:
    """StopProjectVersion, then the span since the start is added to the hours billed. False (and
    the reason kept on the row) if Rekognition refuses."""
    try:
        _call(row, "stop_project_version", ProjectVersionArn=row.project_version_arn)
    except BackendError as exc:
        log.warning("could not stop Custom Labels model %s: %s", row.project_version_arn, exc)
        HostedModel.objects.filter(pk=row.pk).update(status_message=f"Could not stop: {exc}"[:500])
        return False
    now = timezone.now()
    span = (now - row.started_at).total_seconds() if row.started_at else 0.0
    HostedModel.objects.filter(pk=row.pk).update(
        state=State.STOPPED, stopped_at=now, started_at=None, next_check_at=None, checks=0,
        billed_seconds=row.billed_seconds + max(0.0, span), status_message=why[:500])
    log.info("stopped Custom Labels model %s for project %s: %s", row.project_version_arn, row.project_id, why)
    return True


def stop_idle_models(*, limit: int = 100) -> int:
    """The sweeper's part: stop every tracked model idle for ``LOUPE_MODEL_IDLE_MINUTES`` with no
    work waiting for it (0 minutes: never)."""
    idle_minutes = settings.LOUPE_MODEL_IDLE_MINUTES
    if idle_minutes <= 0:
        return 0
    cutoff = timezone.now() - timedelta(minutes=idle_minutes)
    stopped = 0
    for row in HostedModel.objects.filter(state__in=[State.RUNNING, State.STARTING], last_used_at__lt=cutoff)[:limit]:
        if not has_work(row):
            stopped += stop(row, why=f"Stopped after {idle_minutes} minutes without work.")
    return stopped


def stop_rejected(project: Project, arn: str) -> str:
    """Stop a rejected candidate at once; the sentence for the run's log."""
    row = track_started(project, arn)  # the row, created if the start was never recorded
    row.refresh_from_db()
    if row.state == State.STOPPED:
        return "The model version is stopped."
    if stop(row, why="Stopped: the candidate was rejected."):
        return "The model version was stopped (StopProjectVersion): it bills no more."
    row.refresh_from_db()
    return f"{row.status_message} Stop it in the Rekognition console: it bills while it runs."
