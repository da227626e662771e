"""Formatting-only template filters."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key, "")


@register.filter
def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
