"""``manage.py health``: what /healthz reports, readable, with worker names; exit status 1 when
unhealthy (usable as a container health check or from cron)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from classify.health import health_report


class Command(BaseCommand):
    help = "Database, broker, live workers and the age of the oldest waiting work; exits 1 when unhealthy."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options) -> None:
        report = health_report()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(with_names=True), indent=2))
        else:
            self.stdout.write(self.describe(report))
        if not report.ok:
            raise CommandError("unhealthy: " + " ".join(report.problems), returncode=1)

    @staticmethod
    def describe(report) -> str:
        workers = ", ".join(f"{w['name']} (seen {w['seen_seconds_ago']:.0f} s ago)" for w in report.workers) or "none"
        age = lambda seconds: "-" if seconds is None else f"{seconds:.0f} s"  # noqa: E731
        lines = [
            f"database     {report.database}",
            f"broker       {report.broker}",
            f"workers      {workers}",
            f"waiting      {report.queued} (oldest {age(report.oldest_queued_seconds)})",
            f"classifying  {report.classifying} (oldest {age(report.oldest_classifying_seconds)})",
            f"last claim   {age(report.last_claim_seconds)} ago",
            "status       " + ("healthy" if report.ok else "UNHEALTHY"),
        ]
        return "\n".join(lines + [f"  - {problem}" for problem in report.problems])
