from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from classify import backends, bakeoff
from classify.models import BakeoffRun, Project


def fmt(value, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


class Command(BaseCommand):
    help = "Compare backends on a project's human-labelled items: accuracy, F1, auto-accept, latency, cost."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True)
        parser.add_argument("--backends", required=True, help="Comma-separated, e.g. local,rekognition")
        parser.add_argument("--sample", type=int, default=None, help="Score a random sample of this many items")
        parser.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                            help='Settings for one backend, e.g. rekognition=\'{"region": "eu-west-1"}\'')

    def handle(self, *args, project: str, backends: str, sample: int | None, config: list[str], **options) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project {project!r}")
        names = [name.strip() for name in backends.split(",") if name.strip()]
        unknown = [name for name in names if name not in backends_available()]
        if unknown:
            raise CommandError(f"unknown backend(s): {', '.join(unknown)}; installed: {', '.join(backends_available())}")
        configs = parse_configs(config)
        cost = bakeoff.estimate(target, sample=sample, backends=names, configs=configs)
        for row in cost["rows"]:  # what it will cost, before it starts
            price = (f"${row['per_call']:.4f} per call, ${row['total']:.2f} for {cost['items']} item(s)"
                     if row["per_call"] else "")
            self.stdout.write(f"{row['backend']}: " + "; ".join(part for part in (price, row["note"]) if part))
        run = BakeoffRun.objects.create(project=target, backends=names, configs=configs, sample=sample)
        run = bakeoff.execute_bakeoff_run(run)
        if run.state == BakeoffRun.State.FAILED:
            raise CommandError(f"bake-off failed: {run.error}")
        if run.state == BakeoffRun.State.WAITING:
            self.stdout.write(f"Bake-off #{run.pk} {run.waiting_reason[0].lower()}{run.waiting_reason[1:]} "
                              "The worker's sweeper resumes it then; the results appear on the backends page.")
            return
        self.print_table(run.results)

    def print_table(self, results: list[dict]) -> None:
        head = ["backend", "images", "errors", "accuracy", "macro F1", "auto %", "auto prec.", "p50 ms", "p95 ms", "$/1000"]
        rows = [[r["backend"], str(r["images"]), str(r["errors"]), fmt(r["accuracy"]), fmt(r["macro_f1"]),
                 fmt(r["auto_accept_share"], "{:.1%}"), fmt(r["auto_accept_precision"]), fmt(r["latency_p50_ms"], "{:.1f}"),
                 fmt(r["latency_p95_ms"], "{:.1f}"), fmt(r["cost_per_1000_usd"], "{:.2f}")] for r in results]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        for r in results:
            if r["first_error"]:
                self.stdout.write(f"{r['backend']}: {r['errors']} error(s), first: {r['first_error']}")
            for name, row in sorted(r["per_class"].items()):
                self.stdout.write(f"  {r['backend']} {name}: precision {row['precision']:.3f} recall {row['recall']:.3f}"
                                  f" (n={row['support']})")


def backends_available() -> dict:
    return backends.available()


def parse_configs(values: list[str]) -> dict:
    configs = {}
    for value in values:
        name, _, raw = value.partition("=")
        try:
            configs[name.strip()] = json.loads(raw)
        except ValueError:
            raise CommandError(f"--config {name}: not valid JSON") from None
    return configs
