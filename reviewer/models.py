"""Human decisions. Each is a new row (never overwritten), so an item's label history is known.

The lease that says who may decide an item right now lives on the item row itself
(``Item.lease_owner``/``lease_token``/``lease_expires_at``) so claiming is one indexed UPDATE.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from classify.models import Item, Label, Prediction

#: The export report's rule for an item labelled unknown/other. Not a fault: a person said the
#: picture shows none of the classes, so it is reported apart ("not exported"), not "left out".
UNKNOWN_RULE = "unknown-class"


class Decision(models.Model):
    """What a person did with an item: labelled it, skipped it, or undid their last label."""

    class Kind(models.TextChoices):
        LABEL = "label", "Label"
        SKIP = "skip", "Skip"
        UNDO = "undo", "Undo"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.LABEL)
    label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions",
        help_text="The (first) class given; all of them are in labels.",
    )
    labels = models.ManyToManyField(Label, blank=True, related_name="+")
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    scores_shown = models.JSONField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    seconds_spent = models.FloatField(null=True, blank=True)
    supersedes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    undone = models.BooleanField(default=False, help_text="A later undo took this decision back.")
    audit = models.BooleanField(default=False, help_text="The item was an unannounced auto-accept check.")
    agrees = models.BooleanField(
        null=True, blank=True, help_text="Agreed with the final label (set when consensus is resolved)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One decision per lease: a double submit cannot store two.
            models.UniqueConstraint(fields=["lease_token"], condition=Q(lease_token__isnull=False),
                                    name="one_decision_per_lease"),
        ]
        indexes = [models.Index(fields=["item", "reviewer"]), models.Index(fields=["reviewer", "created_at"]),
                   models.Index(fields=["created_at"], name="decision_created")]  # rollup refresh

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.item} by {self.reviewer}"


def export_file_key(instance: Export, filename: str) -> str:
    return f"exports/{instance.project_id}/loupe-{instance.project.slug}-export-{instance.pk}.zip"


class Export(models.Model):
    """One export of a project's labels as Rekognition Custom Labels manifests, with its report.

    ``target`` is ``s3://bucket/prefix``, a local path (the command line) or ``download`` (a zip
    kept in ``file`` for the export page). ``report`` lists every item left out and why, item by
    item, and the dataset rules that failed.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    DOWNLOAD = "download"

    project = models.ForeignKey("classify.Project", on_delete=models.CASCADE, related_name="exports")
    target = models.CharField(max_length=500, help_text='"s3://bucket/prefix", a local path, or "download".')
    options = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    progress = models.PositiveIntegerField(default=0, help_text="Items examined so far.")
    total = models.PositiveIntegerField(default=0, help_text="Items to examine.")
    counts = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to=export_file_key, max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export #{self.pk} of {self.project}"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    @property
    def problems(self) -> list[dict]:
        """The items left out because they break a rule (not those labelled unknown on purpose)."""
        return [p for p in self.report.get("problems", []) if p.get("rule") != UNKNOWN_RULE]

    @property
    def set_aside(self) -> list[dict]:
        """The items people labelled unknown/other: not exported, by design."""
        return [p for p in self.report.get("problems", []) if p.get("rule") == UNKNOWN_RULE]
