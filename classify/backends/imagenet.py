"""The 1000 ImageNet-1k class names (no torch import, so the web process can use them)."""

from __future__ import annotations

import functools
from pathlib import Path

CLASSES_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"
NUM_CLASSES = 1000


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """Return the class names; index i is logit i of the ImageNet models.

    The two "crane" classes are disambiguated as "crane (bird)" and "crane (machine)" so that
    names are unique keys.
    """
    names = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{CLASSES_FILE} has {len(names)} lines, expected {NUM_CLASSES}")
    return tuple(names)
