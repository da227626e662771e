"""What a step of a training run returns (``Done``, ``Wait``) or raises (``StepFailed``, ``NotPromoted``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Done:
    """The step finished; ``detail`` goes to the run's log; ``skip_to`` jumps over later steps;
    ``finished``: the step has decided the run (its state is set), nothing waits for an admin."""

    detail: str = ""
    skip_to: str = ""
    finished: bool = False


@dataclass(frozen=True)
class Wait:
    """Not yet (AWS still working, or a retryable error): run this step again after a backoff."""

    detail: str = ""


class StepFailed(Exception):
    """The run cannot go on; the message is the reason shown to project admins."""


class NotPromoted(Exception):
    """The candidate is measured and stored, but does not clear the bar: the run stops here."""
