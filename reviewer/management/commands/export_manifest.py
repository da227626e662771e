"""Export a project's labels as Rekognition Custom Labels manifests (see docs/export.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from classify.models import Project
from reviewer.export.rules import Options, s3_location
from reviewer.export.runs import execute_export
from reviewer.models import Export


class Command(BaseCommand):
    help = "Write Custom Labels manifests (+ images) to s3://bucket/prefix or a local zip; recorded as an export."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="Project slug")
        parser.add_argument("--out", required=True, help="s3://bucket/prefix, a .zip path or a folder")
        parser.add_argument("--test-split", type=float, default=0.0, help="Share of images for test, e.g. 0.2")
        parser.add_argument("--include-auto", action="store_true", help='Also auto-accepted items ("human-annotated": "no")')
        parser.add_argument("--multi-label", action="store_true", help="Keep items with several labels")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the train/test split")
        parser.add_argument("--s3-prefix", default="",
                            help="For a local zip: the s3://bucket/prefix its source-refs point at")
        parser.add_argument("--manifests-only", action="store_true", help="Do not copy images")

    def handle(self, *args, project: str, out: str, test_split: float, include_auto: bool, multi_label: bool,
               seed: int, s3_prefix: str, manifests_only: bool, **options) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project {project!r}")
        if not 0 <= test_split < 1:
            raise CommandError("--test-split must be at least 0 and below 1")
        for url in [s3_prefix] * bool(s3_prefix) + [out] * out.startswith("s3://"):
            try:
                s3_location(url)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        chosen = Options(test_split=test_split, include_auto=include_auto, multi_label=multi_label,
                         seed=seed, source_prefix=s3_prefix, copy_images=not manifests_only)
        export = Export.objects.create(project=target, target=out, options=chosen.as_dict())
        export = execute_export(export=export)
        self.print_report(export)
        if export.state == Export.State.FAILED:
            raise CommandError(f"export #{export.pk} failed: {export.error}")

    def print_report(self, export: Export) -> None:
        for problem in export.problems:
            self.stderr.write(f"left out item #{problem['item']}: {problem['rule']}: {problem['message']}")
        if export.set_aside:
            items = ", ".join(f"#{problem['item']}" for problem in export.set_aside)
            self.stdout.write(f"labelled unknown/other, not exported (not a class to train on): {items}")
        for problem in export.report.get("dataset", []):
            self.stderr.write(f"dataset: {problem['rule']}: {problem['message']}")
        for warning in export.report.get("warnings", []):
            self.stderr.write(f"warning: {warning}")
        counts = export.counts
        if export.state == Export.State.DONE:
            sets = ", ".join(f"{name} {counts[name]}" for name in ("train", "test") if name in counts)
            unknown = f"; {counts['unknown']} labelled unknown/other, not exported" if counts.get("unknown") else ""
            self.stdout.write(f"export #{export.pk}: {counts['exported']} of {counts['examined']} items ({sets}){unknown}; "
                              f"{counts['left_out']} left out (breaking a rule)")
            for where in counts.get("published", []):
                self.stdout.write(f"  {where}")
