"""Decisions in the admin: read-only provenance, scoped to the projects the user administers."""

from __future__ import annotations

from django.contrib import admin

from classify.admin.scoping import ViewOnlyAdmin

from .models import Decision


@admin.register(Decision)
class DecisionAdmin(ViewOnlyAdmin):
    project_path = "item__project"
    list_display = ("item", "kind", "label", "reviewer", "undone", "created_at")
    list_filter = (("item__project", admin.RelatedOnlyFieldListFilter), ("label", admin.RelatedOnlyFieldListFilter),
                   "kind")
    list_select_related = ("item", "label", "reviewer")
    exclude = ("labels",)
    readonly_fields = ("class_names",)

    @admin.display(description="Classes")
    def class_names(self, obj: Decision) -> str:
        return ", ".join(label.name for label in obj.labels.all())
