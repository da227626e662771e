"""Model versions (read-only: they change through training runs) and budgets (superusers)."""

from __future__ import annotations

from django.contrib import admin

from classify.models import Budget, ModelVersion

from .scoping import ViewOnlyAdmin


@admin.register(ModelVersion)
class ModelVersionAdmin(ViewOnlyAdmin):
    """Model versions change only through training runs and their approval (the Models page)."""

    list_display = ["project", "backend", "version", "f1", "held_out_accuracy", "n_train", "n_test", "is_active",
                    "created_at"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter), "backend", "is_active"]
    exclude = ["artifact"]

@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Budgets, installation-wide ones included (no project): for superusers. Project admins set
    their project's budgets on its backends page."""

    list_display = ["__str__", "project", "backend", "period", "limit_usd"]
    list_filter = ["backend", "period"]
    exclude = ["alerted"]

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission
