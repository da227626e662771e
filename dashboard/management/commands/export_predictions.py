"""manage.py export_predictions --project SLUG [--since WHEN] [--format jsonl|csv] [--output PATH]"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from classify.models import Project
from dashboard import predictions

RELATIVE = re.compile(r"^(\d+)([hd])$")


def parse_since(value: str) -> datetime:
    """``7d``, ``12h``, a date (``2026-11-01``, midnight UTC) or an ISO date-time."""
    match = RELATIVE.match(value.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        return timezone.now() - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    moment = parse_datetime(value)
    if moment is None and (day := parse_date(value)) is not None:
        moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise CommandError(f"--since: {value!r} is not 7d, 12h, a date or an ISO date-time")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


class Command(BaseCommand):
    help = ("Stream every prediction of a project (scores, thresholds in force, model version, final label) "
            "as JSON Lines or CSV, for offline analysis.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--since", help="Only predictions made since: 7d, 12h, 2026-11-01 or an ISO date-time.")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", help="A file to write (default: standard output).")

    def handle(self, *args, project: str, since: str | None, format: str, output: str | None, **options):
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"no project {project!r}")
        rows = predictions.prediction_rows(found, since=parse_since(since) if since else None)
        out = open(output, "w", encoding="utf-8", newline="") if output else self.stdout  # noqa: SIM115
        try:
            if format == "csv":
                classes = list(found.labels.order_by("order", "pk").values_list("name", flat=True))
                count = predictions.write_csv(rows, out, classes=classes)
            else:
                count = predictions.write_jsonl(rows, out)
        finally:
            if output:
                out.close()
        self.stderr.write(f"{count} predictions written")
