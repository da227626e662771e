"""/metrics: every value computed from the database (and the rollups) at scrape time.

So any gunicorn worker answers a scrape with the same numbers, whichever process (web worker,
Celery worker) did the work: nothing lives in one process's memory. Histograms and counters are
sums over the hourly rollups, which only grow (the hours are recomputed, never shrunk, unless
items are deleted).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, Max, Min, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from classify.models import Budget, Item, Project, WorkerHeartbeat
from classify.services import budgets

from . import bins
from .models import DriftAlarm, HourlyRollup, RefreshLog, StatusSnapshot
from .selectors.rollups import add_counts

AUDIT_WINDOW = timedelta(days=30)
# How long an item has waited in a status: since which of its times.
QUEUE_CLOCKS = {Item.Status.RECEIVED: "created_at", Item.Status.QUEUED: "enqueued_at",
                Item.Status.CLASSIFYING: "claimed_at", Item.Status.NEEDS_REVIEW: "created_at"}


class LoupeCollector:
    """A prometheus_client collector that queries the database on each ``collect``."""

    def collect(self):
        slugs = dict(Project.objects.values_list("pk", "slug"))
        yield from _items(slugs)
        yield _queue_ages(slugs)
        yield from _backends(slugs)
        yield from _audit(slugs)
        yield from _drift(slugs)
        yield from _heartbeats()
        yield from _budgets()


def exposition() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoupeCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _items(slugs):
    """From the latest status snapshot (taken by every rollup refresh, so at most
    LOUPE_ROLLUP_EVERY_SECONDS old): counting a million items on every scrape would not do."""
    items = GaugeMetricFamily("loupe_items", "Items per project and status (at the last rollup refresh).",
                              labels=["project", "status"])
    stuck = GaugeMetricFamily("loupe_items_backend_error", "Items waiting for review because their backend failed "
                              "(retries used up, or an error retrying cannot fix), at the last rollup refresh.",
                              labels=["project"])
    latest = StatusSnapshot.objects.aggregate(hour=Max("hour"))["hour"]
    for row in StatusSnapshot.objects.filter(hour=latest).order_by("project_id", "status"):
        items.add_metric([slugs.get(row.project_id, "?"), row.status], row.count)
        if row.status == Item.Status.NEEDS_REVIEW:
            stuck.add_metric([slugs.get(row.project_id, "?")], row.backend_errors)
    yield items
    yield stuck


def _queue_ages(slugs):
    """Live: per project and status, the oldest item's clock (an index walk each, not a count)."""
    ages = GaugeMetricFamily("loupe_queue_oldest_age_seconds", "Age of the oldest item waiting in each status.",
                             labels=["project", "status"])
    now = timezone.now()
    for project_id, slug in slugs.items():
        for status, clock in QUEUE_CLOCKS.items():
            oldest = Item.objects.filter(project_id=project_id, status=status).aggregate(t=Min(clock))["t"]
            if oldest is not None:
                ages.add_metric([slug, status], (now - oldest).total_seconds())
    return ages


COUNTER_METRICS = ("latency", "latency_sum_ms", "calls", "reused", "cost_usd", "retries", "backend_errors")


def rollup_totals(project_ids, metrics, **filters) -> dict[tuple[int, str, str, int], float]:
    """{(project, metric, key, bin): sum over all hours} (bin -1 for plain values): indexed
    queries per project (the rollups' unique index starts with project and metric), not a scan
    of the whole table."""
    totals = {}
    plain = [metric for metric in metrics if metric not in bins.BINNED]
    histograms = [metric for metric in metrics if metric in bins.BINNED]
    for project_id in project_ids:
        rows = HourlyRollup.objects.filter(project_id=project_id, **filters)
        for row in rows.filter(metric__in=plain).values("metric", "key").annotate(v=Sum("value")):
            totals[(project_id, row["metric"], row["key"], -1)] = row["v"]
        summed = add_counts(rows.filter(metric__in=histograms).values_list("metric", "key", "counts"))
        for (metric, key), counts in summed.items():
            for index, n in enumerate(counts):
                totals[(project_id, metric, key, index)] = n
    return totals


def _by_key(totals, metric: str) -> dict[tuple[int, str], float]:
    out: dict[tuple[int, str], float] = defaultdict(float)
    for (project_id, name, key, _bin), value in totals.items():
        if name == metric:
            out[(project_id, key)] += value
    return out


def _backends(slugs):
    totals = rollup_totals(slugs, COUNTER_METRICS)
    latency = HistogramMetricFamily("loupe_classification_latency_seconds", "Backend call time per prediction "
                                    "(reused scores excluded).", labels=["project", "backend"])
    buckets: dict[tuple, dict[int, float]] = defaultdict(dict)
    for (project_id, metric, key, index), value in totals.items():
        if metric == "latency":
            buckets[(project_id, key)][index] = value
    sums = _by_key(totals, "latency_sum_ms")
    for (project_id, backend), counts in sorted(buckets.items()):
        cumulative, running = [], 0.0
        for index, edge in enumerate(bins.LATENCY_MS):
            running += counts.get(index, 0)
            cumulative.append((str(edge / 1000), running))
        cumulative.append(("+Inf", running + counts.get(len(bins.LATENCY_MS), 0)))
        latency.add_metric([slugs.get(project_id, "?"), backend], cumulative,
                           sums.get((project_id, backend), 0.0) / 1000)
    yield latency
    for metric, name, help_text in (
            ("calls", "loupe_backend_calls", "Backend calls made."),
            ("reused", "loupe_predictions_reused", "Predictions that reused an identical image's scores."),
            ("cost_usd", "loupe_backend_cost_usd", "What backend calls cost, in US dollars."),
            ("backend_errors", "loupe_backend_errors", "Items sent to review because their backend failed (retries "
             "used up, or an error retrying cannot fix).")):
        family = CounterMetricFamily(name, help_text, labels=["project", "backend"])
        for (project_id, backend), value in sorted(_by_key(totals, metric).items()):
            family.add_metric([slugs.get(project_id, "?"), backend], value)
        yield family
    retries = CounterMetricFamily("loupe_backend_retries", "Classification retries, by backend and error type.",
                                  labels=["project", "backend", "error"])
    for (project_id, key), value in sorted(_by_key(totals, "retries").items()):
        backend, _, error = key.partition(":")
        retries.add_metric([slugs.get(project_id, "?"), backend, error], value)
    yield retries


def _audit(slugs):
    totals = rollup_totals(slugs, ("audit_checked", "audit_confirmed"), hour__gte=timezone.now() - AUDIT_WINDOW)
    checked, confirmed = _by_key(totals, "audit_checked"), _by_key(totals, "audit_confirmed")
    precision = GaugeMetricFamily("loupe_audit_precision", "Share of audited auto-accepts people confirmed, last "
                                  "30 days.", labels=["project", "class"])
    count = GaugeMetricFamily("loupe_audit_checked", "Audited auto-accepts, last 30 days.", labels=["project", "class"])
    for (project_id, label), n in sorted(checked.items()):
        precision.add_metric([slugs.get(project_id, "?"), label], confirmed.get((project_id, label), 0) / n)
        count.add_metric([slugs.get(project_id, "?"), label], n)
    yield precision
    yield count


def _drift(slugs):
    alarm = GaugeMetricFamily("loupe_drift_alarm", "1 while a class's share of predictions is outside its drift "
                              "band.", labels=["project", "class"])
    shift = GaugeMetricFamily("loupe_drift_share_shift", "Recent minus baseline share of an alarmed class.",
                              labels=["project", "class"])
    for row in DriftAlarm.objects.filter(ended_at__isnull=True).order_by("project_id", "label"):
        alarm.add_metric([slugs.get(row.project_id, "?"), row.label], 1)
        shift.add_metric([slugs.get(row.project_id, "?"), row.label], row.shift)
    yield alarm
    yield shift
    opened = CounterMetricFamily("loupe_drift_alarms", "Drift alarms ever opened.", labels=["project"])
    for row in DriftAlarm.objects.order_by().values("project_id").annotate(n=Count("pk")):
        opened.add_metric([slugs.get(row["project_id"], "?")], row["n"])
    yield opened


def _heartbeats():
    now = timezone.now()
    age = GaugeMetricFamily("loupe_worker_heartbeat_age_seconds", "Seconds since each Celery worker last wrote "
                            "its heartbeat (seen in the last 7 days; gone after a warm shutdown).",
                            labels=["worker", "kind"])
    for beat in WorkerHeartbeat.objects.filter(seen_at__gte=now - timedelta(days=7)).order_by("name"):
        age.add_metric([beat.name, "worker"], (now - beat.seen_at).total_seconds())
    yield age
    last = RefreshLog.objects.order_by("-started_at").first()
    refreshed = GaugeMetricFamily("loupe_rollup_age_seconds", "Seconds since the last rollup refresh started "
                                  "(celery beat runs it).")
    took = GaugeMetricFamily("loupe_rollup_refresh_seconds", "How long the last rollup refresh took.")
    if last is not None:
        refreshed.add_metric([], (now - last.started_at).total_seconds())
        took.add_metric([], last.seconds)
    yield refreshed
    yield took




def _budgets():
    """Each budget's spend in its current period, so an alert can fire before Loupe's own 80% and
    100% alerts do (docs/backends.md, Controlling cost). One sum per budget: budgets are few."""
    labels = ["scope", "backend", "period"]
    used = GaugeMetricFamily("loupe_budget_used_ratio", "Share of the budget spent in its current period "
                             "(1 = used up).", labels=labels)
    spent = GaugeMetricFamily("loupe_budget_spent_usd", "Spent in the budget's current period, US dollars.",
                              labels=labels)
    limit = GaugeMetricFamily("loupe_budget_limit_usd", "The budget's limit per period, US dollars.", labels=labels)
    now = timezone.now()
    for budget in Budget.objects.select_related("project").order_by("pk"):
        status = budgets.status_of(budget, now)
        key = [status.scope, budget.backend, budget.period]
        used.add_metric(key, status.percent / 100)
        spent.add_metric(key, float(status.spent))
        limit.add_metric(key, float(budget.limit_usd))
    yield used
    yield spent
    yield limit
