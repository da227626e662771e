"""Connections to outside systems: endpoints (webhooks, results to S3) and their deliveries, and
S3 import jobs with one row per object seen (what makes an import resumable and idempotent).

Events themselves are ``classify.Event`` (the outbox); this app consumes them.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from classify.models import Event, Item, Project


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """Where a project's events go: an HTTPS URL (a webhook, signed with the endpoint's secret),
    or an ``s3://bucket/prefix`` that receives each settled item's result as JSON."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (HTTPS)"
        RESULTS_S3 = "results_s3", "Results to S3"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="endpoints")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.CharField(max_length=1100, help_text="https://... for a webhook, s3://bucket/prefix for results.")
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    event_types = models.JSONField(default=list, blank=True, help_text="Event types to send; empty means all.")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        if self.kind == self.Kind.RESULTS_S3:
            return event_type in (Event.Type.ITEM_SETTLED, Event.Type.PING)
        return event_type == Event.Type.PING or not self.event_types or event_type in self.event_types


class Delivery(models.Model):
    """One event for one endpoint: attempts until it succeeds or ``LOUPE_WEBHOOK_MAX_ATTEMPTS``.

    ``log`` keeps the latest attempts (when, HTTP status or error, the start of the response).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    log = models.JSONField(default=list, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="one_delivery_per_endpoint_event")]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event.type} to {self.endpoint}"


class S3Import(models.Model):
    """One import of every image under an S3 prefix. Rerunning the same source resumes it."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="s3_imports")
    source = models.CharField(max_length=1100, help_text="s3://bucket/prefix")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    listed = models.PositiveIntegerField(default=0, help_text="Objects listed so far.")
    listing_done = models.BooleanField(default=False)
    continuation = models.CharField(max_length=1100, blank=True, help_text="Where listing resumes (a key).")
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Imported by an earlier run (same key and ETag).")
    failed = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import of {self.source} into {self.project}"

    @property
    def processed(self) -> int:
        return self.imported + self.duplicates + self.skipped + self.failed


class ImportedObject(models.Model):
    """One S3 object an import handled: the key+ETag that makes the next run skip it."""

    class Outcome(models.TextChoices):
        IMPORTED = "imported", "Imported"
        DUPLICATE = "duplicate", "Duplicate of an item"
        SKIPPED = "skipped", "Imported before"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    s3_import = models.ForeignKey(S3Import, on_delete=models.CASCADE, related_name="imported_objects")
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=100)
    size = models.BigIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["s3_import", "bucket", "key"], name="one_row_per_object_per_import"),
        ]
        indexes = [models.Index(fields=["project", "bucket", "key", "etag"])]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key} ({self.outcome})"
