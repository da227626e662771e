"""Who sees what in the admin: non-superuser staff see and change only the projects they
administer (Membership role admin), and the rows and inlines that belong to them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet

from classify.models import Membership, Project


def administered_projects(user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN)


def administers_any(request) -> bool:
    """Whether the user administers a project (asked once per request: every model of the admin's
    sidebar asks it)."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    if "_loupe_administers_any" not in request.__dict__:
        request._loupe_administers_any = administered_projects(user).exists()
    return request._loupe_administers_any


class ScopedInline:
    """Inlines follow the same rule as their parent page: project admins may edit them."""

    def has_view_permission(self, request, obj=None) -> bool:
        return administers_any(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return administers_any(request)

    def has_add_permission(self, request, obj=None) -> bool:
        return administers_any(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return administers_any(request)


class ProjectScopedAdmin(admin.ModelAdmin):
    """Limits rows, and project choices in forms, to the projects the user administers."""

    project_path = "project"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        # An IN (subquery) of project ids, not a join: no duplicate rows, so no DISTINCT (which
        # made PostgreSQL sort every item of a million-item project for one page of the list).
        projects = administered_projects(request.user).values("pk")
        return queryset.filter(**{f"{self.project_path}__in": projects})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project":
            kwargs["queryset"] = administered_projects(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request) -> bool:
        return administers_any(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return administers_any(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return administers_any(request)

    def has_add_permission(self, request) -> bool:
        return administers_any(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return administers_any(request)


class ViewOnlyAdmin(ProjectScopedAdmin):
    """Rows project admins may look at and act on through actions, never edit, add or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
