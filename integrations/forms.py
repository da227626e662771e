from __future__ import annotations

from django import forms

from classify import aws
from classify.models import Event, Project

from . import outbound, results

EVENT_CHOICES = [(value, label) for value, label in Event.Type.choices if value != Event.Type.PING]


class EndpointForm(forms.Form):
    url = forms.CharField(max_length=1000, label="URL",
                          help_text="https://… receives signed JSON events; s3://bucket/prefix receives each settled "
                                    "item's result file (inside this project's S3 locations).")
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(choices=EVENT_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                            label="Events", help_text="None ticked: all of them (webhooks).")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        try:
            if url.startswith("s3://"):
                return "s3://{}/{}".format(*results.check_location(self.project, url))
            outbound.check_url(url)
        except (ValueError, outbound.Refused) as exc:
            raise forms.ValidationError(str(exc)) from None
        return url


class S3ImportForm(forms.Form):
    source = forms.CharField(max_length=1000, label="S3 location", help_text="s3://bucket/prefix: every image under it.")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_source(self) -> str:
        try:
            bucket, prefix = aws.confine_s3(self.cleaned_data["source"], project=self.project, what="import source")
        except aws.S3LocationRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return f"s3://{bucket}/{prefix.strip('/')}"
