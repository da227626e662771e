from __future__ import annotations

import json
from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.text import slugify

from . import aws, backends, selectors
from .models import Budget, Project
from .retrain.custom_labels import LOCATIONS


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=64, required=False, help_text="Used in URLs and the API. Leave empty to derive it from the name.")
    labels = forms.CharField(
        label="Classes", help_text="Comma-separated, e.g. cat, dog, bird. An unknown/other class is always added."
    )
    backend = forms.ChoiceField(choices=backends.choices, initial="local")

    def clean_slug(self) -> str:
        slug = self.cleaned_data.get("slug") or slugify(self.cleaned_data.get("name", ""))
        if not slug:
            raise forms.ValidationError("Enter a slug.")
        if Project.objects.filter(slug=slug).exists():
            raise forms.ValidationError("A project with this slug exists already.")
        return slug

    def clean_labels(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["labels"].split(",") if name.strip()]
        if len(names) < 2:
            raise forms.ValidationError("Enter at least two classes.")
        if len({name.lower() for name in names}) != len(names):
            raise forms.ValidationError("Class names must be distinct.")
        if any(name.lower() == "unknown" for name in names):
            raise forms.ValidationError("'unknown' is added for you.")
        if any(len(name) > 100 for name in names):
            raise forms.ValidationError("Class names are at most 100 characters.")
        return names


class BakeoffForm(forms.Form):
    backends = forms.MultipleChoiceField(choices=backends.choices, widget=forms.CheckboxSelectMultiple)
    sample = forms.IntegerField(min_value=1, max_value=100_000, required=False,
                                help_text="Score a random sample of this many labelled items (empty: all).")
    configs = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Settings per backend as JSON, e.g. {"rekognition": {"region": "eu-west-1"}}. '
                  "The project's current backend uses its own settings unless given here.",
    )

    def __init__(self, *args, project: Project, trusted: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project, self.trusted = project, trusted

    def clean_configs(self) -> dict:
        """An object of objects; a project admin may name only this project's own Custom Labels models."""
        raw = self.cleaned_data.get("configs") or "{}"
        try:
            value = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise forms.ValidationError('Give an object of objects: {"backend": {"key": "value"}}.')
        for config in value.values():
            if not self.trusted and (arn := selectors.foreign_model_version(self.project, config)):
                raise forms.ValidationError(f"{arn} is not a model of this project.")
        return value


class CustomLabelsTrainingForm(forms.Form):
    """Train on Rekognition Custom Labels from manifests already exported to S3. The Rekognition
    project is always ``loupe-<slug>`` (docs/security.md)."""

    train_manifest = forms.CharField(max_length=1100, help_text="s3://bucket/key of the TRAIN manifest.")
    test_manifest = forms.CharField(max_length=1100, help_text="s3://bucket/key of the TEST manifest.")
    output_location = forms.CharField(max_length=1100, help_text="s3://bucket/prefix where Rekognition writes its output.")
    region = forms.CharField(max_length=32, required=False, help_text="AWS region (empty: the default).")
    start_model = forms.BooleanField(required=False, initial=True,
                                     help_text="Start the new model (billed while running) so it can be compared.")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        prefix = aws.default_s3_prefix(project)
        self.fields["train_manifest"].initial = f"{prefix}/train.manifest"
        self.fields["test_manifest"].initial = f"{prefix}/test.manifest"
        self.fields["output_location"].initial = f"{prefix}/training-output"

    def clean(self) -> dict:
        """Every location inside this project's own S3 prefix (``aws.confine_s3``)."""
        data = super().clean()
        for field, what, key_required in LOCATIONS:
            if data.get(field):
                try:
                    aws.confine_s3(data[field], project=self.project, what=what, key_required=key_required)
                except aws.S3LocationRefused as exc:
                    self.add_error(field, str(exc))
        return data


class ApiTokenForm(forms.Form):
    """A new API token for the logged-in user, narrowed as they choose."""

    EXPIRY_CHOICES = [("30", "in 30 days"), ("7", "in 7 days"), ("90", "in 90 days"), ("365", "in a year"),
                      ("", "never")]

    name = forms.CharField(max_length=100, required=False, help_text="What it is for, e.g. “nightly import”.")
    project = forms.ModelChoiceField(queryset=Project.objects.none(), required=False, empty_label="every project of mine",
                                     help_text="The token sees only this project.")
    read_only = forms.BooleanField(required=False, help_text="Reads only: no uploads, no review decisions.")
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, initial="30", label="Expires")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = selectors.projects_for(user)

    def token_options(self) -> dict:
        data = self.cleaned_data
        days = int(data["expires"]) if data.get("expires") else None
        return {"name": data["name"], "project": data["project"], "read_only": data["read_only"],
                "expires_at": timezone.now() + timedelta(days=days) if days else None}


class BudgetForm(forms.Form):
    """A project's spending limit on one paid backend (replaces the one for the same backend and period)."""

    backend = forms.ChoiceField(choices=lambda: [(name, name) for name, _ in backends.choices() if name != "local"])
    period = forms.ChoiceField(choices=Budget.Period.choices)
    limit_usd = forms.DecimalField(label="Limit (USD)", min_value=0, max_digits=12, decimal_places=4)


class OverBudgetForm(forms.Form):
    over_budget = forms.ChoiceField(label="When a call would cross a budget", choices=Project.OverBudget.choices,
                                    widget=forms.RadioSelect)
    cascade = forms.BooleanField(label="Cheap path first (cascade)", required=False,
                                 help_text=Project._meta.get_field("cascade").help_text)
