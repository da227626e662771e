"""Forms of the reviewer pages."""

from __future__ import annotations

from django import forms

from classify import aws

from .export.rules import Options, s3_location


class ExportForm(forms.Form):
    destination = forms.ChoiceField(choices=[("download", "Download (a zip of manifests + images)"),
                                             ("s3", "Amazon S3 (images and manifests under a prefix)")])
    s3_url = forms.CharField(label="S3 location", required=False, max_length=400,
                             help_text="s3://bucket/prefix: for S3, where everything goes; for a download, "
                                       "where you will upload the zip's contents (the source-refs point there).")
    test_split = forms.FloatField(min_value=0, max_value=0.5, initial=0.2,
                                  help_text="Share of images held out for test (0: Rekognition splits 80/20 itself).")
    seed = forms.IntegerField(initial=0, min_value=0, help_text="The same seed and data give the same split.")
    include_auto = forms.BooleanField(required=False, label="Include auto-accepted items",
                                      help_text='Marked "human-annotated": "no", with the model\'s score as confidence.')
    multi_label = forms.BooleanField(required=False, label="Multi-label",
                                     help_text="Keep images with several classes (one attribute per class).")

    def clean_s3_url(self) -> str:
        url = self.cleaned_data["s3_url"].strip()
        if url:
            try:
                s3_location(url)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean(self) -> dict:
        """An S3 destination must lie in this project's own prefix (``aws.confine_s3``); a download's
        source prefix is only text in the manifests, so any well-formed location will do."""
        data = super().clean()
        if data.get("destination") == "s3" and not data.get("s3_url"):
            self.add_error("s3_url", "Give the s3://bucket/prefix to export to.")
        elif data.get("destination") == "s3" and data.get("s3_url"):
            try:
                aws.confine_s3(data["s3_url"], project=self.project, what="export location")
            except aws.S3LocationRefused as exc:
                self.add_error("s3_url", str(exc))
        return data

    def target_and_options(self, default_prefix: str) -> tuple[str, dict]:
        data = self.cleaned_data
        to_s3 = data["destination"] == "s3"
        options = Options(test_split=data["test_split"], seed=data["seed"], include_auto=data["include_auto"],
                          multi_label=data["multi_label"], source_prefix=data["s3_url"] or default_prefix)
        return (data["s3_url"] if to_s3 else "download"), options.as_dict()
