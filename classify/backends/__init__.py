"""Backend registry: a name → dotted path map, and ``get_backend`` to build one.

Adding a backend is one module here, one line in ``BACKENDS`` and one test module (CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Backend, BackendError, ClassSpec, ModelArtifact, Scores, classify_batch

BACKENDS: dict[str, str] = {
    "local": "classify.backends.local.LocalBackend",
    "rekognition": "classify.backends.rekognition.RekognitionBackend",
    "custom_labels": "classify.backends.custom_labels.CustomLabelsBackend",
    "sagemaker": "classify.backends.sagemaker.SageMakerBackend",
    "bedrock": "classify.backends.bedrock.BedrockBackend",
}

__all__ = ["Backend", "BackendError", "ClassSpec", "ModelArtifact", "Scores", "available", "classify_batch",
           "get_backend", "runs_locally"]


def available() -> dict[str, str]:
    """The backends this installation offers, by name: the built-in ones and ``LOUPE_EXTRA_BACKENDS``."""
    return {**BACKENDS, **settings.LOUPE_EXTRA_BACKENDS}


def choices() -> list[tuple[str, str]]:
    return [(name, name) for name in available()]


def get_backend(
    name: str,
    *,
    classes: Sequence[ClassSpec],
    config: Mapping[str, Any],
    model: ModelArtifact | None = None,
) -> Backend:
    """Build the named backend. An unknown name is a non-retryable ``BackendError``."""
    try:
        path = available()[name]
    except KeyError:
        raise BackendError(f"no backend called {name!r} is installed", retryable=False) from None
    backend_class = import_string(path)
    return backend_class(classes=classes, config=config, model=model)


def runs_locally(name: str) -> bool:
    """Whether the named backend computes on the worker itself (``runs_locally = True`` on its
    class, as the local model): its items go to the local classification queue, the others'
    (cloud calls) to the cloud queue (config/settings.py)."""
    path = available().get(name)
    return bool(path) and getattr(import_string(path), "runs_locally", False)
