"""A deterministic backend for the test suite only: registered through ``LOUPE_EXTRA_BACKENDS``
(tests/conftest.py for the test process, tests/worker_process.py for a real worker), never shipped.

Each class maps to a colour (``Label.mappings["colour"] = ["#ff0000"]``); an image scores by how
close its mean colour is to each. ``backend_config`` may ask it to misbehave, so tests can drive
the failure paths through a real worker: ``{"fail": "retryable" | "fatal" | "crash"}``, ``{"crash_once": "/path/of/a/marker"}`` and
``{"sleep": seconds}``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageStat

from classify.backends.base import BackendError, ClassSpec, ModelArtifact, Scores, distribution


def _rgb(hex_colour: str) -> np.ndarray:
    value = hex_colour.lstrip("#")
    return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64)


class ColourBackend:
    name = "colour"
    runs_locally = True  # on the worker itself: the local classification queue
    model_version = "colour-1"

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        self.config = dict(config)
        self.colours = {spec.name: _rgb(spec.mapping[0]) for spec in classes if spec.mapping}

    def classify(self, image: Image.Image) -> Scores:
        self._misbehave()
        mean = np.array(ImageStat.Stat(image.convert("RGB")).mean)
        # Closeness in [0, 1]: 1 for the exact colour, 0 at the far corner of the RGB cube.
        closeness = {name: 1.0 - np.linalg.norm(mean - rgb) / 441.7 for name, rgb in self.colours.items()}
        best = max(closeness, key=closeness.get, default=None)
        known = {name: (value**8 if name == best else value**8 / 4) for name, value in closeness.items()}
        total = sum(known.values()) or 1.0
        known = {name: value / total * closeness.get(best, 0) for name, value in known.items()}
        return Scores(distribution(known, self.classes), self.model_version, raw={"mean": mean.tolist()})

    def _misbehave(self) -> None:
        time.sleep(float(self.config.get("sleep", 0)))
        fail = self.config.get("fail")
        if fail == "retryable":
            raise BackendError("colour backend: throttled (test)", retryable=True)
        if fail == "fatal":
            raise BackendError("colour backend: access denied (test)", retryable=False)
        if fail == "crash":
            os._exit(1)  # a worker child dying mid-task, as an OOM kill would
        if (marker := self.config.get("crash_once")) and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the same, the first time only
