"""Server-side SVG charts (pure functions: data in, markup out; no ORM, no JavaScript, no CDN).

Three shapes cover every dashboard plot: lines over time or over a numeric axis, bars per
category (optionally with an interval), and bars over numeric bins. Each SVG carries a
<title> and <desc> for screen readers, labelled axes, and a legend; the page puts the same
numbers in a table beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.html import escape

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 26, 42
PALETTE = ("#2f5bea", "#e8590c", "#12805c", "#b42318", "#7a5af8", "#0e9384", "#c11574", "#667085",
           "#ca8504", "#155eef")


@dataclass
class Series:
    name: str
    points: list[tuple[object, float | None]]  # (x, y); y None is a gap


@dataclass
class Chart:
    """What to draw. ``kind``: "line" (x = datetime or number), "bar" (x = category), "hist" (x =
    the lower edge of a bin of width ``bin_width``). ``y_unit``: "count", "share" (0-1, shown as
    %), "seconds", "usd" or "score". ``markers``: vertical lines (x, label)."""

    kind: str
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    y_unit: str = "count"
    markers: list[tuple[float, str]] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    x_range: tuple[float, float] | None = None
    bin_width: float = 0.0
    step: str = "day"


def fmt(value: float | None, unit: str) -> str:
    """A number as the plots and tables show it."""
    if value is None:
        return "–"
    if unit == "share":
        return f"{100 * value:.1f}%"
    if unit == "usd":
        return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"
    if unit == "score":
        return f"{value:.2f}"
    if unit == "seconds":
        return duration(value)
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{seconds / 86400:.1f} d"


def render(chart: Chart, *, ident: str) -> str:
    """The chart as an accessible inline SVG."""
    values = [y for s in chart.series for _, y in s.points if y is not None]
    values += [high for _, high in chart.intervals.values()]
    top = max(values, default=0.0)
    y_max = 1.0 if chart.y_unit == "share" else _nice_duration(top) if chart.y_unit == "seconds" else _nice(top)
    body = _frame(chart, y_max)
    if not values:
        body.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                    'class="chart-empty">No data in this window yet</text>')
    elif chart.kind == "bar":
        body += _bars(chart, y_max)
    elif chart.kind == "hist":
        body += _hist(chart, y_max)
    else:
        body += _lines(chart, y_max)
    body += _legend(chart)
    desc = f"{chart.y_label} by {chart.x_label}: " + "; ".join(s.name for s in chart.series)
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{ident}-t {ident}-d" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="{ident}-t">{escape(chart.title)}</title>'
            f'<desc id="{ident}-d">{escape(desc)}</desc>{"".join(body)}</svg>')


def _nice(value: float) -> float:
    """A round upper bound for the y axis (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value * 0.999999:
            return step * magnitude
    return 10 * magnitude


NICE_SECONDS = (10, 20, 40, 60, 120, 240, 600, 1200, 2400, 3600, 7200, 4 * 3600, 8 * 3600, 12 * 3600, 86400,
                2 * 86400, 4 * 86400, 8 * 86400)


def _nice_duration(value: float) -> float:
    """A y axis in seconds whose quarter ticks read as round durations."""
    return next((step for step in NICE_SECONDS if step >= value), _nice(value))


def _y(value: float, y_max: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / y_max)


def _frame(chart: Chart, y_max: float) -> list[str]:
    parts = []
    for i in range(5):
        value = y_max * i / 4
        y = _y(value, y_max)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid-line"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(value, chart.y_unit))}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" text-anchor="middle" class="axis-label">'
                 f'{escape(chart.x_label)}</text>')
    parts.append(f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" class="axis-label" '
                 f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(chart.y_label)}</text>')
    return parts


def _x_scale(chart: Chart):
    xs = [x for s in chart.series for x, _ in s.points]
    numeric = [_num(x) for x in xs]
    low, high = chart.x_range or (min(numeric, default=0.0), max(numeric, default=1.0))
    high = high if high > low else low + 1
    return lambda x: LEFT + (WIDTH - LEFT - RIGHT) * (_num(x) - low) / (high - low), low, high


def _num(x) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _x_ticks(chart: Chart, scale, low: float, high: float) -> list[str]:
    parts = []
    xs = sorted({x for s in chart.series for x, _ in s.points}, key=_num)
    if xs and isinstance(xs[0], datetime):
        every = max(1, len(xs) // 6)
        ticks = [(x, x.strftime("%d %b" if chart.step == "day" else "%d %H:00")) for x in xs[::every]]
    else:
        ticks = [(low + (high - low) * i / 5, fmt(low + (high - low) * i / 5, "score")) for i in range(6)]
    for x, text in ticks:
        parts.append(f'<text x="{scale(x):.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle" class="tick">{escape(text)}</text>')
    return parts


def _lines(chart: Chart, y_max: float) -> list[str]:
    scale, low, high = _x_scale(chart)
    parts = _x_ticks(chart, scale, low, high)
    for index, series in enumerate(chart.series):
        colour = PALETTE[index % len(PALETTE)]
        segments, current = [], []
        for x, y in sorted(series.points, key=lambda point: _num(point[0])):
            if y is None:
                segments, current = segments + [current] if current else segments, []
                continue
            current.append(f"{scale(x):.1f},{_y(y, y_max):.1f}")
        segments += [current] if current else []
        for points in segments:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{" ".join(points)}"/>')
    parts += _markers(chart, scale)
    return parts


def _markers(chart: Chart, scale) -> list[str]:
    parts = []
    for x, label in chart.markers:
        px = scale(x)
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" class="marker"/>'
                     f'<text x="{px + 3:.1f}" y="{TOP + 10}" class="marker-label">{escape(label)}</text>')
    return parts


def _bars(chart: Chart, y_max: float) -> list[str]:
    categories = list(dict.fromkeys(str(x) for s in chart.series for x, _ in s.points))
    slot = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    width = slot * 0.7 / max(len(chart.series), 1)
    parts = []
    for c_index, category in enumerate(categories):
        parts.append(f'<text x="{LEFT + slot * (c_index + 0.5):.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle" '
                     f'class="tick">{escape(category[:14])}</text>')
        for s_index, series in enumerate(chart.series):
            y = dict((str(x), v) for x, v in series.points).get(category)
            if y is None:
                continue
            x = LEFT + slot * c_index + slot * 0.15 + width * s_index
            top = _y(y, y_max)
            tip = escape(f"{category}: {fmt(y, chart.y_unit)}")
            parts.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{HEIGHT - BOTTOM - top:.1f}" '
                         f'fill="{PALETTE[s_index % len(PALETTE)]}"><title>{tip}</title></rect>')
        if category in chart.intervals:
            low, high = chart.intervals[category]
            cx = LEFT + slot * (c_index + 0.5)
            parts.append(f'<path d="M{cx:.1f},{_y(low, y_max):.1f}V{_y(high, y_max):.1f}M{cx - 5:.1f},{_y(low, y_max):.1f}'
                         f'h10M{cx - 5:.1f},{_y(high, y_max):.1f}h10" class="interval"/>')
    return parts


def _hist(chart: Chart, y_max: float) -> list[str]:
    scale, low, high = _x_scale(chart)
    parts = _x_ticks(chart, scale, low, high)
    for index, series in enumerate(chart.series):
        for x, y in series.points:
            if not y:
                continue
            left, right = scale(x), scale(_num(x) + chart.bin_width)
            top = _y(y, y_max)
            parts.append(f'<rect x="{left + 0.5:.1f}" y="{top:.1f}" width="{max(right - left - 1, 1):.1f}" '
                         f'height="{HEIGHT - BOTTOM - top:.1f}" fill="{PALETTE[index % len(PALETTE)]}" opacity="0.85"/>')
    parts += _markers(chart, scale)
    return parts


def _legend(chart: Chart) -> list[str]:
    if len(chart.series) < 2:
        return []
    parts, x = [], LEFT + 4
    for index, series in enumerate(chart.series[:10]):
        name = series.name[:30]
        parts.append(f'<rect x="{x}" y="{TOP - 10}" width="9" height="9" fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="{x + 12}" y="{TOP - 2}" class="legend">{escape(name)}</text>')
        x += 22 + 6.2 * len(name)
    return parts

