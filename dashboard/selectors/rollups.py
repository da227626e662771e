"""The lower level every plot shares: the time span, the plot's shape, and sums over the rollups.

Nothing here reads the item, prediction or decision tables: each sum is a grouped query over the
hourly rollups of one project and span.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from classify.models import Project
from dashboard.bins import HOUR, floor_hour
from dashboard.charts import Chart
from dashboard.models import HourlyRollup

MAX_LINES = 8


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    step: str  # "hour" or "day"

    @property
    def buckets(self) -> list[datetime]:
        delta = HOUR if self.step == "hour" else timedelta(days=1)
        first = self.start if self.step == "hour" else self.start.replace(hour=0)
        out, moment = [], first
        while moment < self.end:
            out.append(moment)
            moment += delta
        return out


def span_for(days: int, *, now: datetime | None = None) -> Span:
    """The last ``days`` days up to the current hour; hourly points for one day, daily beyond."""
    end = floor_hour(now or timezone.now()) + HOUR
    start = end - timedelta(days=days)
    return Span(start=start, end=end, step="hour" if days <= 1 else "day")


@dataclass
class Plot:
    slug: str
    section: str
    title: str
    about: str
    charts: list[Chart]
    headers: list[str]
    rows: list[list[object]]
    alerts: list[str] = field(default_factory=list)


def rollup_rows(project: Project, span: Span, metrics):
    return HourlyRollup.objects.filter(project=project, hour__gte=span.start, hour__lt=span.end,
                                       metric__in=list(metrics))


def by_time(project: Project, span: Span, metrics) -> dict[tuple[str, str], dict[datetime, float]]:
    """{(metric, key): {bucket start: sum}}."""
    bucket = TruncDay("hour", tzinfo=UTC) if span.step == "day" else F("hour")
    rows = rollup_rows(project, span, metrics).annotate(t=bucket).values("metric", "key", "t").annotate(v=Sum("value"))
    out: dict[tuple[str, str], dict[datetime, float]] = defaultdict(dict)
    for row in rows:
        out[(row["metric"], row["key"])][row["t"]] = row["v"]
    return out


def span_totals(project: Project, span: Span, metrics, *, by_bin: bool = False) -> dict[tuple, float]:
    """{(metric, key): sum over the span}, or with ``by_bin`` {(metric, key, bin): ...} of
    histogram metrics (their per-bin counts are added up here: JSON does not sum in SQL)."""
    if not by_bin:
        rows = rollup_rows(project, span, metrics).values("metric", "key").annotate(v=Sum("value"))
        return {(row["metric"], row["key"]): row["v"] for row in rows}
    if connection.vendor == "postgresql":
        return bin_totals_in_sql(project, span, metrics)
    return bin_totals_in_python(project, span, metrics)


def bin_totals_in_python(project: Project, span: Span, metrics) -> dict[tuple, float]:
    """Histogram bins added up here, row by row (any database)."""
    return {(metric, key, index): n for (metric, key), counts in add_counts(
        rollup_rows(project, span, metrics).values_list("metric", "key", "counts")).items()
        for index, n in enumerate(counts)}


def bin_totals_in_sql(project: Project, span: Span, metrics) -> dict[tuple, float]:
    """The same sums computed by PostgreSQL, which unnests each jsonb array of counts: a 30-day
    window of a busy project is thousands of rows of bins, and decoding them all in Python cost
    more than the 300 ms a plot may take (measured on 1M items, bench/dashboard.py)."""
    sql = f"""
        SELECT r.metric, r.key, bin.ord - 1, SUM(bin.n::float)
        FROM {HourlyRollup._meta.db_table} r
        CROSS JOIN LATERAL jsonb_array_elements_text(r.counts) WITH ORDINALITY AS bin(n, ord)
        WHERE r.project_id = %s AND r.hour >= %s AND r.hour < %s AND r.metric = ANY(%s)
          AND jsonb_typeof(r.counts) = 'array'
        GROUP BY 1, 2, 3"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, span.start, span.end, list(metrics)])
        return {(metric, key, index): total for metric, key, index, total in cursor.fetchall()}


def add_counts(rows) -> dict[tuple, list[float]]:
    """Sum histogram rows ``(*group, counts)`` per group, bin by bin."""
    out: dict[tuple, list[float]] = {}
    for *group, counts in rows:
        if not counts:
            continue
        total = out.setdefault(tuple(group), [0.0] * len(counts))
        for index, n in enumerate(counts):
            total[index] += n
    return out


def metric_by_time(found, metric: str) -> dict[datetime, float]:
    """One metric of a ``by_time`` result, its keys added together."""
    total: dict[datetime, float] = defaultdict(float)
    for (name, _key), points in found.items():
        if name == metric:
            for moment, value in points.items():
                total[moment] += value
    return total


def top_keys(found, metric: str, limit: int = MAX_LINES) -> list[str]:
    """The keys of a metric, biggest first, at most ``limit``."""
    sizes = {key: sum(points.values()) for (name, key), points in found.items() if name == metric}
    return sorted(sizes, key=lambda key: (-sizes[key], key))[:limit]


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def x_label(span: Span) -> str:
    return "hour (UTC)" if span.step == "hour" else "day (UTC)"


def stamp(moment: datetime, span: Span) -> str:
    return moment.strftime("%Y-%m-%d %H:00" if span.step == "hour" else "%Y-%m-%d")


def reviewer_names(ids) -> dict[str, str]:
    users = get_user_model().objects.filter(pk__in=[int(i) for i in ids if str(i).isdigit()])
    return {str(user.pk): user.get_username() for user in users}


def class_thresholds(project: Project) -> dict[str, float]:
    """The accept threshold of each class but unknown, marked on the model and quality plots."""
    return dict(project.labels.filter(is_unknown=False).values_list("name", "accept_threshold"))
