"""Projects: settings, backend (checked by building it), classes and members. No page lists
every account: project admins add members by exact username."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model

from classify import backends, selectors
from classify.models import Label, Membership, Project
from classify.services import projects, scoring

from .labels import LabelInline
from .scoping import ProjectScopedAdmin, ScopedInline, administered_projects


class UsernameField(forms.ModelChoiceField):
    """A user typed by exact username: nothing lists the installation's accounts."""

    widget = forms.TextInput(attrs={"autocomplete": "off", "placeholder": "exact username"})
    default_error_messages = {"invalid_choice": "No active user with that username."}

    def __init__(self, **kwargs) -> None:
        kwargs.pop("widget", None)
        super().__init__(queryset=get_user_model().objects.filter(is_active=True), to_field_name="username",
                         **kwargs)

    def prepare_value(self, value):
        if isinstance(value, int):  # an existing membership's initial value is the user's id
            return self.queryset.model.objects.filter(pk=value).values_list("username", flat=True).first()
        return super().prepare_value(value)


class MembershipInline(ScopedInline, admin.TabularInline):
    model = Membership
    extra = 1

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            return UsernameField(required=True, label="User")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ProjectForm(forms.ModelForm):
    backend = forms.ChoiceField(choices=backends.choices)
    trusted = False  # set for superusers by ProjectAdmin.get_form

    class Meta:
        model = Project
        fields = "__all__"

    def clean(self):
        """Build the backend with these settings now, so a mistake shows here, not on every item.
        A project admin may name only this project's own Custom Labels models."""
        data = super().clean()
        name, config = data.get("backend"), data.get("backend_config")
        if not self.trusted and self.instance.pk and (arn := selectors.foreign_model_version(self.instance, config)):
            self.add_error("backend_config", f"{arn} is not a model of this project (only model versions of "
                                             "its own Rekognition project, loupe-<slug>, may be used).")
        if name and isinstance(config, dict) and self.instance.pk:
            labels = list(self.instance.labels.all())
            try:
                backends.get_backend(name, classes=scoring.class_specs(self.instance, labels, backend=name),
                                     config=config)
            except backends.BackendError as exc:
                self.add_error("backend_config", f"These settings do not work for {name}: {exc}")
        return data


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    form = ProjectForm
    project_path = "pk"
    list_display = ["name", "slug", "backend", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "description"]}),
        ("Classification", {"fields": ["backend", "backend_config"]}),
        ("Learning", {"fields": ["learning_mode", "target_precision", "refit_every", "min_examples_per_class"]}),
        ("Review", {"fields": ["review_order", "multi_label", "review_candidates", "grid_size", "lease_seconds",
                               "consensus_reviews", "consensus_below"]}),
        ("Intake quality checks (0 turns a check off)", {
            "fields": ["min_side", "min_brightness", "max_brightness", "min_sharpness", "max_aspect_ratio",
                       "keep_originals"],
        }),
    ]
    inlines = [LabelInline, MembershipInline]

    class Media:
        css = {"all": ["css/admin.css"]}

    def get_queryset(self, request):
        return administered_projects(request.user)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.trusted = request.user.is_superuser  # installation owners may point at any model
        return form

    def get_readonly_fields(self, request, obj=None):
        """The slug names the project's S3 prefix and Rekognition project: only superusers change it,
        so a project admin cannot move their project onto another prefix."""
        return [] if request.user.is_superuser else ["slug"]

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if request.user.is_superuser else {}

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def save_formset(self, request, form, formset, change) -> None:
        """Removing a member gives back their leases in the project at once."""
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            for membership in formset.deleted_objects:
                projects.release_leases(project=form.instance, user=membership.user)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        project = form.instance
        if not project.labels.filter(is_unknown=True).exists():
            Label.objects.create(project=project, name=projects.UNKNOWN_LABEL, is_unknown=True, order=10_000)
