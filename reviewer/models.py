"""Human decisions. Each is a new row (never overwritten), so an item's label history is known.

The lease that says who may decide an item right now lives on the item row itself
(``Item.lease_owner``/``lease_token``/``lease_expires_at``) so claiming is one indexed UPDATE.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from classify.models import Item, Label, Prediction


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
        indexes = [models.Index(fields=["item", "reviewer"]), models.Index(fields=["reviewer", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.item} by {self.reviewer}"
