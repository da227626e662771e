"""Classes: thresholds, the ImageNet mapping of the local backend, other backends' mappings and
exemplars (uploaded through the same checks as any image)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.files.base import ContentFile
from django.utils.html import format_html

from classify.backends.imagenet import describe_mapping, imagenet_classes
from classify.backends.local import suggest_imagenet_classes
from classify.images import ImageRejected
from classify.models import Exemplar, Label
from classify.retrain.runs import schedule_refit_check
from classify.services import exemplars, intake

from .scoping import ProjectScopedAdmin, ScopedInline


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
    """Exemplar uploads go through the same checks and re-encoding as the drop zones' uploads
    (``exemplars.prepare_exemplar``: format, pixel limit, the project's quality rules, one copy
    per class); the admin saves the re-encoded file."""

    class Meta:
        model = Exemplar
        fields = ["image"]

    def clean_image(self):
        upload = self.cleaned_data["image"]
        if upload is None or not hasattr(upload, "read") or isinstance(upload, str):
            return upload
        if getattr(upload, "_committed", False):  # an existing file, unchanged
            return upload
        # The page's class, saved or not (on the add page the formset sets no ``label`` yet; its
        # foreign key field holds the parent the exemplar will belong to).
        label = self.fields["label"].parent_instance
        if label.project_id is None:
            raise forms.ValidationError("Choose the class's project first: its quality rules check the picture.")
        try:
            intake.check_upload_size(upload.size or 0)
            prepared = exemplars.prepare_exemplar(label=label, data=upload.read())
        except ImageRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        self.instance.sha256 = prepared.sha256
        self.instance.embedding = None
        return ContentFile(prepared.jpeg, name="exemplar.jpg")


class ExemplarFormSet(forms.BaseInlineFormSet):
    """One copy of a picture per class within one submission too: ``prepare_exemplar`` compares a
    new picture with the class's saved exemplars, not with the other rows of the same form."""

    def clean(self):
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not form.has_changed() or form.errors or self.can_delete and self._should_delete_form(form):
                continue
            digest = form.instance.sha256
            if digest and "image" in form.changed_data:
                if digest in seen:
                    form.add_error("image", "The same picture is added twice on this page.")
                seen.add(digest)


class ExemplarInline(ScopedInline, admin.TabularInline):
    model = Exemplar
    form = ExemplarForm
    formset = ExemplarFormSet
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

    def save_formset(self, request, form, formset, change) -> None:
        """New exemplars may complete the set the first head trains on (cold start)."""
        super().save_formset(request, form, formset, change)
        if formset.model is Exemplar and formset.new_objects:
            schedule_refit_check(form.instance.project, exemplar=True)

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
