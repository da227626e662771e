"""Human decisions. Each is kept (never overwritten), so the history of an item's label is known."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from classify.models import Item, Label, Prediction


class Decision(models.Model):
    """A person's label for an item, with what the model had said when they decided."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="decisions")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.item} → {self.label} by {self.reviewer}"
