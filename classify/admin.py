"""Django admin: where project admins tune thresholds, mappings, exemplars and backends.

Non-superuser staff see and change only the projects they administer (Membership role admin).
What machines and people produced (items' model outputs and leases, predictions, model versions
and their metrics, decisions) is read-only here: it changes only through the services that keep
its rules. No page lists every account: project admins add members by exact username.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils.functional import cached_property
from django.utils.html import format_html

from . import backends, pipeline, selectors
from .backends.imagenet import describe_mapping, imagenet_classes
from .backends.local import suggest_imagenet_classes
from .images import ImageRejected
from .models import Budget, Exemplar, Item, Label, Membership, ModelVersion, Prediction, Project
from .services import classification, exemplars, intake, projects, scoring


def administered_projects(user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN)


def administers_any(request) -> bool:
    user = request.user
    return user.is_active and user.is_staff and (user.is_superuser or administered_projects(user).exists())


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


class LabelForm(forms.ModelForm):
    """Adds a searchable picker for the ImageNet classes the local backend maps this class to; the
    JSON box holds only the other backends' mappings (the picker owns ``mappings["local"]``)."""

    imagenet_classes = forms.MultipleChoiceField(
        required=False, label="ImageNet classes",
        widget=FilteredSelectMultiple("ImageNet classes", is_stacked=False),
        help_text="Local backend, zero-shot mode: this class's score is the sum of these classes' probabilities. "
                  "Leave empty on a new class to start with the suggestions for its name.",
    )

    class Meta:
        model = Label
        fields = ["project", "name", "description", "order", "accept_threshold", "margin", "audit_rate", "mappings"]
        labels = {"mappings": "Other backends' mappings"}
        help_texts = {"mappings": 'Per backend other than local, its own class names, e.g. {"rekognition": ["Cat"]}.'}
        widgets = {"mappings": forms.Textarea(attrs={"rows": 2, "cols": 60})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["imagenet_classes"].choices = [(name, name) for name in imagenet_classes()]
        self.fields["imagenet_classes"].initial = (self.instance.mappings or {}).get("local", [])
        others = {key: value for key, value in (self.instance.mappings or {}).items() if key != "local"}
        self.initial["mappings"] = others

    def clean(self):
        data = super().clean()
        mappings = dict(data.get("mappings") or {})
        chosen = list(data.get("imagenet_classes") or [])
        if not chosen and self.instance.pk is None and data.get("name"):
            chosen = suggest_imagenet_classes(data["name"])  # a new class starts with suggestions
        mappings["local"] = chosen
        data["mappings"] = mappings
        return data


class ExemplarForm(forms.ModelForm):
    """Exemplar uploads go through the same validation and re-encoding as any upload."""

    class Meta:
        model = Exemplar
        fields = ["image"]

    def clean_image(self):
        upload = self.cleaned_data["image"]
        if upload is None or not hasattr(upload, "read") or isinstance(upload, str):
            return upload
        if getattr(upload, "_committed", False):  # an existing file, unchanged
            return upload
        try:
            intake.check_upload_size(upload.size or 0)
            prepared = pipeline.preprocess(upload.read(), max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS,
                                           max_bytes=settings.LOUPE_DECODE_MAX_BYTES)
        except ImageRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        self.instance.sha256 = prepared.sha256
        self.instance.embedding = None
        return ContentFile(prepared.jpeg, name="exemplar.jpg")


class ExemplarInline(ScopedInline, admin.TabularInline):
    model = Exemplar
    form = ExemplarForm
    extra = 1
    fields = ["image", "preview"]
    readonly_fields = ["preview"]

    def preview(self, obj: Exemplar) -> str:
        return format_html('<span class="muted">#{} ({})</span>', obj.pk, obj.sha256[:10]) if obj.pk else "-"


def imagenet_coverage(label: Label, *, short: bool = False) -> str:
    """What the class's ImageNet mapping covers; a class without one is flagged with the fix."""
    if label.is_unknown:
        return "—"
    if label.project.backend != "local":
        return f"(backend {label.project.backend})"
    mapping = describe_mapping(label.name, label.mappings.get("local", []))
    if mapping.coverage == "none":
        text = "⚠ none: choose ImageNet classes or add exemplars" if short else "⚠ " + mapping.hint
        return format_html('<strong class="unmapped">{}</strong>', text)
    if short:
        return f"{len(mapping.classes)} class{'es' if len(mapping.classes) != 1 else ''}"
    return mapping.hint


@admin.register(Label)
class LabelAdmin(ProjectScopedAdmin):
    form = LabelForm
    list_display = ["name", "project", "order", "accept_threshold", "margin", "audit_rate", "imagenet_mapping",
                    "exemplar_count", "auto_accept"]
    list_editable = ["order", "accept_threshold", "margin", "audit_rate"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "project__name"]
    readonly_fields = ["coverage", "calibrated", "paused_at"]
    fieldsets = [
        (None, {"fields": ["project", "name", "description", "order"],
                "description": "The order sets the class's number key on the review screen (first class: 1)."}),
        ("Auto-accept", {"fields": ["accept_threshold", "margin", "audit_rate", "calibrated", "paused_reason",
                                    "paused_at"]}),
        ("ImageNet classes (local model)", {"fields": ["coverage", "imagenet_classes"]}),
        ("Other backends", {"fields": ["mappings"], "classes": ["collapse"]}),
    ]
    inlines = [ExemplarInline]

    class Media:
        css = {"all": ["css/admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("project")

    @admin.display(description="ImageNet mapping")
    def imagenet_mapping(self, obj: Label) -> str:
        return imagenet_coverage(obj, short=True)

    @admin.display(description="What it covers")
    def coverage(self, obj: Label) -> str:
        return imagenet_coverage(obj) if obj.pk else "Suggested from the class name when saved."

    @admin.display(description="exemplars")
    def exemplar_count(self, obj: Label) -> int:
        return obj.exemplars.count()

    @admin.display(description="auto-accept")
    def auto_accept(self, obj: Label) -> str:
        """On, paused (audited precision below the target) or in review (not enough evidence)."""
        return "paused" if obj.paused_reason else ("in review" if obj.hold else "on")

    @admin.display(description="calibration")
    def calibrated(self, obj: Label) -> str:
        c = obj.calibration
        if not c:
            return "Set by hand (no calibration)."
        if c.get("threshold") is None:
            return f"{c.get('at', '')}: no threshold yet ({c.get('reason', '')})"
        return (f"{c.get('at', '')}: {c['threshold']:.3f} from {c.get('model_version', '')} ({c.get('source')}), "
                f"{c.get('correct')} right of {c.get('accepted')} accepted, precision ≥ {c.get('lower', 0):.1%}")

    def save_model(self, request, obj: Label, form, change) -> None:
        """A threshold set by hand replaces the calibrated one (and its promise)."""
        if change and {"accept_threshold", "margin"} & set(form.changed_data):
            obj.calibration = {}
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.is_unknown)


class LabelInline(ScopedInline, admin.TabularInline):
    model = Label
    fields = ["name", "order", "accept_threshold", "margin", "audit_rate", "imagenet_mapping"]
    readonly_fields = ["imagenet_mapping"]
    extra = 0
    show_change_link = True

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # delete a class from its own page, where the unknown class is protected

    @admin.display(description="ImageNet mapping")
    def imagenet_mapping(self, obj: Label) -> str:
        return imagenet_coverage(obj, short=True) if obj.pk else ""


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


class PredictionInline(ScopedInline, admin.TabularInline):
    model = Prediction
    fk_name = "item"
    fields = ["backend", "model_version", "top_label", "top_score", "margin", "decision", "reason", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ViewOnlyAdmin(ProjectScopedAdmin):
    """Rows project admins may look at and act on through actions, never edit, add or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
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
        skipped = queryset.count() - labelled.count()
        self.message_user(request, f"{labelled.count()} exemplar(s) added; {skipped} item(s) without a label skipped.",
                          messages.SUCCESS)


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
