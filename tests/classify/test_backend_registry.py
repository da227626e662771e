"""The backend registry: the built-in backends plus LOUPE_EXTRA_BACKENDS (name=dotted.path pairs)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from classify.backends import BACKENDS, BackendError, ClassSpec, available, get_backend
from config.settings import env_mapping
from tests.colour_backend import ColourBackend

CLASSES = [ClassSpec("red", mapping=("#ff0000",)), ClassSpec("unknown", is_unknown=True)]


def test_extra_backends_are_offered_beside_the_built_in_ones(settings):
    settings.LOUPE_EXTRA_BACKENDS = {"colour": "tests.colour_backend.ColourBackend"}
    assert available() == {**BACKENDS, "colour": "tests.colour_backend.ColourBackend"}
    assert isinstance(get_backend("colour", classes=CLASSES, config={}), ColourBackend)


def test_without_the_setting_the_test_backend_does_not_exist(settings):
    settings.LOUPE_EXTRA_BACKENDS = {}
    assert "colour" not in available()
    with pytest.raises(BackendError, match="no backend called 'colour'") as caught:
        get_backend("colour", classes=CLASSES, config={})
    assert not caught.value.retryable


def test_the_variable_is_read_as_comma_separated_pairs(monkeypatch):
    monkeypatch.setenv("LOUPE_EXTRA_BACKENDS", " colour = tests.colour_backend.ColourBackend , x=a.B ")
    assert env_mapping("LOUPE_EXTRA_BACKENDS", "") == {"colour": "tests.colour_backend.ColourBackend", "x": "a.B"}
    monkeypatch.setenv("LOUPE_EXTRA_BACKENDS", "colour")
    with pytest.raises(ImproperlyConfigured, match="name=value pairs"):
        env_mapping("LOUPE_EXTRA_BACKENDS", "")
