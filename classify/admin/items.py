"""Items, read-only with their predictions: searched and paged in ways indexes answer at a
million rows, acted on (re-classify, promote to exemplar) only through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.utils.functional import cached_property

from classify import selectors
from classify.models import Item, Prediction
from classify.retrain.runs import schedule_refit_check
from classify.services import classification, exemplars

from .scoping import ScopedInline, ViewOnlyAdmin, administered_projects


class PredictionInline(ScopedInline, admin.TabularInline):
    model = Prediction
    fk_name = "item"
    fields = ["backend", "model_version", "top_label", "top_score", "margin", "decision", "reason", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``EXACT_UP_TO`` rows; above that, PostgreSQL's planner estimate
    stands in (an exact COUNT of a million items took longer than the rest of the page)."""

    EXACT_UP_TO = 20_000

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if connection.vendor != "postgresql" or not hasattr(query, "query"):
            return super().count
        sql, params = query.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            estimate = int(cursor.fetchone()[0][0]["Plan"]["Plan Rows"])
        return estimate if estimate > self.EXACT_UP_TO else super().count


class KeptCountPaginator(EstimatedCountPaginator):
    """``known``, when given, is the list's exact size (from the kept counts); else as
    ``EstimatedCountPaginator``."""

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, known: int | None = None):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.known = known

    @cached_property
    def count(self) -> int:
        return self.known if self.known is not None else super().count


class AdministeredProjectFilter(admin.SimpleListFilter):
    """Filter by project, offering the projects the user administers (not a DISTINCT over items)."""

    title = "project"
    parameter_name = "project__id__exact"

    def lookups(self, request, model_admin):
        return [(project.pk, project.name) for project in administered_projects(request.user).order_by("name")]

    def queryset(self, request, queryset):
        return queryset.filter(project_id=self.value()) if self.value() else queryset


@admin.register(Item)
class ItemAdmin(ViewOnlyAdmin):
    list_display = ["id", "project", "status", "label", "original_filename", "attempts", "created_at"]
    list_select_related = ["project", "label"]
    list_filter = ["status", AdministeredProjectFilter]
    search_fields = ["original_filename"]  # see get_search_results
    search_help_text = "An item id, a filename (or its start), or a SHA-256."
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    exclude = ["embedding", "backend_config", "claim", "lease_token"]
    inlines = [PredictionInline]
    actions = ["reclassify", "promote_to_exemplar"]

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return KeptCountPaginator(queryset, per_page, orphans, allow_empty_first_page, known=self.kept_count(request))

    def kept_count(self, request) -> int | None:
        """The list's exact size from the kept counts (``StatusCount``) when nothing but the status
        and project filters narrows it (a search, or any other parameter: None, and the paginator
        counts or estimates). Exact at any size, where counting a million rows took longer than
        the rest of the page."""
        params = {key: value for key, value in request.GET.items() if key not in ("o", "p") and (key, value) != ("q", "")}
        if set(params) - {"status__exact", "project__id__exact"}:
            return None
        projects = administered_projects(request.user)
        if "project__id__exact" in params:
            if not params["project__id__exact"].isdigit():
                return None
            projects = projects.filter(pk=int(params["project__id__exact"]))
        return selectors.item_count(projects, status=params.get("status__exact"))

    def get_search_results(self, request, queryset, search_term):
        """Searches that indexes answer at any size: the id, the exact SHA-256, or the start of
        the filename (case-sensitive: a substring search read every row of the table)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(original_filename__startswith=term)
        if term.isdigit():
            match |= Q(pk=int(term))
        if len(term) == 64 and all(ch in "0123456789abcdef" for ch in term.lower()):
            match = Q(sha256=term.lower())
        return queryset.filter(match), False

    @admin.action(description="Classify the selected items again (failed, rejected or decided by the model); "
                              "rejected items skip the quality checks", permissions=["view"])
    def reclassify(self, request, queryset) -> None:
        count = classification.reclassify(items=queryset)
        self.message_user(request, f"{count} item(s) re-queued; reviewed items keep their human label.",
                          messages.SUCCESS)


    @admin.action(description="Use the selected labelled items as exemplars of their class", permissions=["view"])
    def promote_to_exemplar(self, request, queryset) -> None:
        labelled = queryset.filter(label__isnull=False)
        for item in labelled:
            exemplars.promote_to_exemplar(item=item)
        for project in {item.project for item in labelled}:
            schedule_refit_check(project, exemplar=True)  # the first head, once every class has enough
        skipped = queryset.count() - labelled.count()
        self.message_user(request, f"{labelled.count()} exemplar(s) added; {skipped} item(s) without a label skipped.",
                          messages.SUCCESS)
