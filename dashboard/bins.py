"""Histogram bins shared by the rollups, the plots and /metrics (pure functions, no ORM).

A histogram is stored as counts per bin; bin ``i`` holds values below ``edges[i]`` and at or
above ``edges[i - 1]``; the last bin (``len(edges)``) holds everything from the last edge up.
Quantiles read from bins are interpolated inside the bin: exact enough for a plot, and the
price of never scanning the raw rows again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)

SCORE_BINS = 20  # top score 0-1 in steps of 0.05
LATENCY_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
WAIT_SECONDS = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
DECISION_SECONDS = (1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)
# The histogram metrics of the rollups and their number of bins.
BINNED = {"score": SCORE_BINS, "reviewed": SCORE_BINS, "correct": SCORE_BINS, "latency": len(LATENCY_MS) + 1,
          "wait": len(WAIT_SECONDS) + 1, "seconds": len(DECISION_SECONDS) + 1}


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour holding ``moment``: the rollups' time grid."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def score_bin(score: float) -> int:
    return min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)


def score_edges() -> list[float]:
    """The lower edge of each score bin: 0, 0.05, ..., 0.95."""
    return [round(i / SCORE_BINS, 4) for i in range(SCORE_BINS)]


def value_bin(value: float, edges: Sequence[float]) -> int:
    for index, edge in enumerate(edges):
        if value < edge:
            return index
    return len(edges)


def quantile(counts: dict[int, float], edges: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a binned histogram, None when it is empty.

    Linear inside the bin; a quantile that falls in the open last bin is reported as the last
    edge (a floor: "at least this").
    """
    total = sum(counts.values())
    if total <= 0:
        return None
    target = q * total
    seen = 0.0
    for index in range(len(edges) + 1):
        n = counts.get(index, 0)
        if n and seen + n >= target:
            if index == len(edges):
                return float(edges[-1])
            low = float(edges[index - 1]) if index else 0.0
            return low + (edges[index] - low) * (target - seen) / n
        seen += n
    return float(edges[-1])


def wilson_interval(successes: float, trials: float, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small samples and near 0 or 1."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    spread = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)
