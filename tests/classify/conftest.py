"""Fixtures shared by the backend tests: AWS clients that sign offline and never retry inside."""

from __future__ import annotations

import pytest

from classify import aws


@pytest.fixture
def aws_env(monkeypatch, settings):
    """Fake credentials (signing works offline), no shared config, one attempt per client call (so
    each stubbed response is one task attempt), and fresh clients."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings.LOUPE_AWS_MAX_ATTEMPTS = 1
    aws.client.cache_clear()
    yield
    aws.client.cache_clear()
