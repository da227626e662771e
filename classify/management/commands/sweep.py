from __future__ import annotations

from django.core.management.base import BaseCommand

from classify.services import counts, lifecycle


class Command(BaseCommand):
    help = "Re-queue items stuck in received/queued/classifying (what the periodic sweeper does)."

    def handle(self, *args, **options) -> None:
        result = lifecycle.sweep_stuck_items()
        folded = counts.compact_status_counts()
        self.stdout.write(f"{result.requeued} re-queued, {result.failed} failed; {folded} status-count rows folded.")
