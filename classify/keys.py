"""Number keys of a project's classes on the review screen.

Each class keeps one key for the whole project: the position in the class list (``Label.order``,
which project admins change in the admin), 1 to 9; unknown/other is always 0. Classes past the
ninth have no number key (the search, ``/``, finds them). Fixed keys let a reviewer's habit
hold from item to item, as in Label Studio and CVAT: the candidates are still listed by score.
"""

from __future__ import annotations

from collections.abc import Iterable

from classify.models import Label

UNKNOWN_KEY = 0
MAX_KEYS = 9


def number_keys(labels: Iterable[Label]) -> dict[int, int]:
    """Label id → its key (1-9, 0 for unknown), for labels in the project's class order."""
    keys: dict[int, int] = {}
    known = 0
    for label in labels:
        if label.is_unknown:
            keys[label.pk] = UNKNOWN_KEY
            continue
        known += 1
        if known <= MAX_KEYS:
            keys[label.pk] = known
    return keys
