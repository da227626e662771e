"""Formatting-only template filters."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as format_date

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key, "")


@register.filter
def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


WHEN = "j M Y, H:i:s T"


@register.filter
def when(value) -> str:
    """A datetime or an ISO 8601 string (as run logs store them) in the site's time zone, readable:
    "1 Dec 2026, 09:31:05 UTC"; anything else unchanged."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return format_date(value, WHEN)
