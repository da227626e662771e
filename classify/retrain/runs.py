"""Training runs: train a candidate model, measure it, compare it on real history, let an admin switch.

A ``TrainingRun`` walks through a list of small steps (``STEPS``). The Celery task
``classify.advance_training_run`` runs one step per message and schedules the next one, so the
run's state lives in the database, not in a worker: a step that has to wait for AWS returns
``Wait`` and the task comes back after a backoff; a worker restart loses nothing, since the
sweeper re-enqueues a run whose next step is overdue. Only the task carrying the run's current
``token`` may run a step, so a duplicate message is harmless.

Both kinds end the same way: a gate (local: coverage at the target precision against the active
model on the same labels, ``promotion.coverage_gate``; Custom Labels: F1 at least the project's
``min_f1`` and at least the active model's), ``compare`` (the candidate re-classifies recent
items), then, in a project's automatic learning mode, a local candidate is promoted by itself
(``promotion.promote``); otherwise a project admin approves (the candidate becomes active; for
Custom Labels the project switches to it) or rejects.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from classify import aws, events
from classify.backends import BackendError, ModelArtifact, get_backend
from classify.enqueue import enqueue
from classify.models import ModelVersion, Project, TrainingRun
from classify.services import hosting, learning
from classify.services.scoring import build_backend, class_specs

from . import custom_labels, local, promotion
from .compare import compare_candidate, historical_sample
from .data import human_label_count, labels_per_class
from .outcomes import Done, NotPromoted, StepFailed, Wait

log = logging.getLogger(__name__)
# A queued refit check stops further ones for at most this long (seconds), should its message be lost.
REFIT_CHECK_WAIT = 300
State = TrainingRun.State
Kind = TrainingRun.Kind

POLL_FIRST_SECONDS = 30
POLL_MAX_SECONDS = 900
STEP_LEASE = timedelta(minutes=30)  # a step taking longer than this is presumed dead
OVERDUE_AFTER = timedelta(minutes=2)  # grace before the sweeper re-sends a run's next step


def gate(run: TrainingRun) -> Done:
    """Promote only a candidate with F1 ≥ the project's minimum and ≥ the active model's F1."""
    candidate, project = run.candidate, run.project
    active = ModelVersion.objects.filter(project=project, backend=candidate.backend, is_active=True).first()
    if candidate.f1 is None or candidate.f1 < project.min_f1:
        raise NotPromoted(f"F1 {_f(candidate.f1)} is below the project's minimum of {project.min_f1:.3f}.")
    active_f1 = active_score(active)
    if active_f1 is not None and candidate.f1 < active_f1:
        raise NotPromoted(f"F1 {_f(candidate.f1)} is below the active model's ({active.version}: {active_f1:.3f}).")
    return Done(f"F1 {candidate.f1:.3f} clears the minimum {project.min_f1:.3f}"
                + (f" and the active {active.version} ({active_f1:.3f})." if active_f1 is not None else
                   " (no active model to beat)."))


def active_score(active: ModelVersion | None) -> float | None:
    """The active model's F1; a head fitted before runs kept F1 is judged by its held-out accuracy."""
    if active is None:
        return None
    return active.f1 if active.f1 is not None else active.held_out_accuracy


def _f(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"


def candidate_backend(run: TrainingRun, labels):
    """The backend as it would run with the candidate: its artifact (local) or its ARN (Custom Labels)."""
    candidate, project = run.candidate, run.project
    current = project.backend_config if project.backend == candidate.backend else {}
    specs = class_specs(project, labels, backend=candidate.backend)
    if candidate.backend == "local":
        return get_backend("local", classes=specs, config=current,
                           model=ModelArtifact(version=candidate.version, data=bytes(candidate.artifact)))
    return get_backend(candidate.backend, classes=specs, config={**_without_region(current), **candidate.config})


def _without_region(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "region"}  # the new ARN names its region


def compare(run: TrainingRun) -> Done:
    if run.kind == Kind.CUSTOM_LABELS and not run.start_model:
        run.comparison = {"skipped": "The model was not started, so it could not re-classify anything."}
        return Done("Comparison skipped: the model is not running.")
    labels = list(run.project.labels.all())
    items = historical_sample(run.project, run.project.compare_sample)
    run.comparison = compare_candidate(project=run.project, candidate=candidate_backend(run, labels), items=items,
                                       labels=labels)
    c = run.comparison
    if items and c["errors"] == len(items):
        raise StepFailed(f"The candidate could not classify any of {len(items)} items: {c['first_error']}")
    rate = lambda value: "n/a" if value is None else f"{value:.0%}"  # noqa: E731
    return Done(f"Re-classified {c['sample']} recent items: {c['changed']} change class; auto-accept "
                f"{rate(c['auto_accept_before'])} → {rate(c['auto_accept_after'])}; {len(c['warnings'])} warning(s).")


STEPS: dict[str, list[tuple[str, str, Callable]]] = {
    Kind.LOCAL: [
        ("fit", "Fit the head on every label; score each label out of fold; calibrate the thresholds",
         local.fit_candidate),
        ("gate", "Compare coverage at the target precision with the active model's on the same labels",
         promotion.coverage_gate),
        ("compare", "Re-classify recent items with the candidate", compare),
        ("promote", "Promote automatically (automatic mode)", promotion.promote),
    ],
    Kind.CUSTOM_LABELS: [
        ("project", "Create or reuse the Rekognition project", custom_labels.ensure_project),
        ("datasets", "Create the TRAIN and TEST datasets from the manifests", custom_labels.create_datasets),
        ("wait_datasets", "Wait for the datasets", custom_labels.wait_for_datasets),
        ("train", "Start training (CreateProjectVersion)", custom_labels.start_training),
        ("wait_training", "Wait for training", custom_labels.wait_for_training),
        ("evaluate", "Read F1 and per-label metrics from the evaluation summary", custom_labels.read_evaluation),
        ("gate", "Check F1 against the minimum and the active model", gate),
        ("start_model", "Start the model version", custom_labels.start_model),
        ("wait_model", "Wait for the model to run", custom_labels.wait_for_model),
        ("compare", "Re-classify recent items with the candidate", compare),
    ],
}


def step_titles(kind: str) -> dict[str, str]:
    return {name: title for name, title, _ in STEPS[kind]}


# --- Starting ----------------------------------------------------------------------------------


def start_local_training(*, project: Project, user=None) -> TrainingRun | None:
    """Queue a local refit, or return None when one is already queued or running: the database
    allows one per project (a partial unique index), so concurrent starts cannot both win."""
    try:
        with transaction.atomic():
            return _start(TrainingRun(project=project, kind=Kind.LOCAL, created_by=user))
    except IntegrityError:
        return None


def refit_check_key(project: Project) -> str:
    return f"loupe:refit-check:{project.pk}:{project.created_at.timestamp():.6f}"


def schedule_refit_check(project: Project, *, exemplar: bool = False) -> None:
    """After a human label: have the training worker check, after commit, whether a refit is due
    (``maybe_schedule_refit`` counts the project's labels, which a decision must not wait for).
    At most one check waits per project: the cache key is taken here and dropped by the task.

    After an exemplar is added (``exemplar``), the check is queued even with automatic refits off
    (``refit_every`` 0) while the project has no head yet: it trains the first one from
    exemplars (``train_from_exemplars``) once every class has enough."""
    if project.refit_every == 0 and not (exemplar and project.backend == "local"):
        return
    if not cache.add(refit_check_key(project), 1, timeout=REFIT_CHECK_WAIT):
        return

    def publish() -> None:
        try:
            enqueue("classify.check_refit", project.pk)
        except Exception as exc:  # broker down: the next label after REFIT_CHECK_WAIT tries again
            log.warning("could not queue a refit check for project %s: %s", project.pk, exc)

    transaction.on_commit(publish)


def check_refit(project_id: int) -> bool:
    """The queued refit check: drop the project's key (so the next label queues another), then check."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return False
    cache.delete(refit_check_key(project))
    return train_from_exemplars(project) is not None or maybe_schedule_refit(project)


def maybe_schedule_refit(project: Project) -> bool:
    """After ``refit_every`` new human labels, train a new head in the background (local backend),
    or recalibrate the thresholds from the reviewed items (other backends, automatic mode).

    The head is a candidate: the run measures it and compares it with the active model; in
    automatic mode it is promoted by itself if it beats it, in approval mode it waits for a project
    admin (and no new refit starts meanwhile). Nothing starts while a class has fewer than
    ``min_examples_per_class`` labels.
    """
    if project.refit_every == 0:
        return False
    if project.backend != "local":
        return _maybe_recalibrate(project)
    waiting = TrainingRun.objects.filter(project=project, kind=Kind.LOCAL, state=State.AWAITING_DECISION)
    if waiting.exists() or TrainingRun.objects.filter(project=project, kind=Kind.LOCAL,
                                                      state__in=[State.QUEUED, State.RUNNING]).exists():
        return False
    last = ModelVersion.objects.filter(project=project, backend="local").order_by("-created_at").first()
    new_labels = human_label_count(project) - (last.human_labels_seen if last else 0)
    if new_labels < project.refit_every or min(labels_per_class(project).values(), default=0) < max(
            project.min_examples_per_class, 2):
        return False
    return start_local_training(project=project) is not None


COLD_START_EXEMPLARS = 3


def train_from_exemplars(project: Project) -> TrainingRun | None:
    """Cold start: once every class has at least 3 exemplars (and ``min_examples_per_class``
    labels), train the first head at once instead of waiting for ``refit_every`` reviews.

    Called by ``create_project --exemplars`` and by the queued refit check that every added
    exemplar schedules (the project page's drop zones, the new-project page, the admin's
    "promote to exemplar"); ``start_local_training``'s unique index lets one run in at a time."""
    if project.backend != "local" or ModelVersion.objects.filter(project=project, backend="local").exists():
        return None
    counts = labels_per_class(project)
    if not counts or min(counts.values()) < max(COLD_START_EXEMPLARS, project.min_examples_per_class):
        return None
    return start_local_training(project=project)


def _maybe_recalibrate(project: Project) -> bool:
    """Automatic mode, a backend Loupe does not train: every ``refit_every`` labels, its thresholds
    are recalibrated from the items it scored and people then reviewed."""
    if project.learning_mode != Project.LearningMode.AUTOMATIC or human_label_count(project) % project.refit_every:
        return False
    try:
        version = build_backend(project, list(project.labels.all())).model_version
    except BackendError:
        return False
    return learning.recalibrate(project, backend=project.backend, model_version=version) is not None


def start_custom_labels_training(*, project: Project, train_manifest: str, test_manifest: str, output_location: str,
                                 region: str = "", start_model: bool = True, user=None) -> TrainingRun:
    """Train on Rekognition Custom Labels from exported manifests (``s3://bucket/key`` each), in the
    Rekognition project ``loupe-<slug>``. Every location must lie in the project's own S3 prefix
    (``aws.S3LocationRefused`` otherwise, and no run is made)."""
    locations = {"train_manifest": train_manifest.strip(), "test_manifest": test_manifest.strip(),
                 "output_location": output_location.strip()}
    for field, what, key_required in custom_labels.LOCATIONS:
        aws.confine_s3(locations[field], project=project, what=what, key_required=key_required)
    stamp = timezone.now().strftime("%Y-%m-%dT%H.%M.%S")
    run = TrainingRun(project=project, kind=Kind.CUSTOM_LABELS, region=region, **locations,
                      rekognition_project=custom_labels.project_name(project),
                      version_name=f"{project.slug}.{stamp}", start_model=start_model, created_by=user)
    return _start(run)


def _start(run: TrainingRun) -> TrainingRun:
    run.step, run.token, run.next_poll_at = STEPS[run.kind][0][0], uuid.uuid4(), timezone.now()
    run.save()
    token = run.token
    transaction.on_commit(lambda: send(run.pk, token))
    return run


def send(run_id: int, token, countdown: float = 0) -> None:
    """Publish the run's next step. A lost message is not lost work: the sweeper sends it again."""
    try:
        enqueue("classify.advance_training_run", run_id, str(token), countdown=countdown)
    except Exception as exc:  # broker down: the run keeps its state and the sweeper resends it
        log.warning("could not queue training run %s: %s", run_id, exc)


# --- Running one step ------------------------------------------------------------------------------


def claim(run_id: int, token: str) -> TrainingRun | None:
    """Take the run's next step for this task (a conditional UPDATE); None if another task has it
    or the run has stopped."""
    new, now = uuid.uuid4(), timezone.now()
    taken = TrainingRun.objects.filter(pk=run_id, token=token, state__in=[State.QUEUED, State.RUNNING]).update(
        token=new, state=State.RUNNING, next_poll_at=now + STEP_LEASE, updated_at=now)
    if not taken:
        return None
    return TrainingRun.objects.select_related("project", "candidate").get(pk=run_id)


def run_step(run: TrainingRun) -> float | None:
    """Run the claimed run's current step and record the outcome. Returns the countdown (seconds)
    before the next step should run, or None when the run has stopped (finished, failed, or waiting
    for a project admin)."""
    steps = STEPS[run.kind]
    names = [name for name, _, _ in steps]
    handler = steps[names.index(run.step)][2]
    try:
        outcome = handler(run)
    except BackendError as exc:
        if not exc.retryable:
            return _stop(run, State.FAILED, str(exc))
        outcome = Wait(f"Retrying after: {exc}")
    except StepFailed as exc:
        return _stop(run, State.FAILED, str(exc))
    except NotPromoted as exc:
        return _stop(run, State.NOT_PROMOTED, str(exc))
    except Exception as exc:  # a bug or an outage of our own: stop visibly rather than loop
        log.exception("training run %s failed in step %s", run.pk, run.step)
        return _stop(run, State.FAILED, f"{exc.__class__.__name__}: {exc}")
    if isinstance(outcome, Wait):
        run.polls += 1
        countdown = min(POLL_MAX_SECONDS, POLL_FIRST_SECONDS * 2 ** min(run.polls - 1, 10))
        _log(run, "waiting", f"{outcome.detail} Check {run.polls}; next in {countdown} s.")
        run.next_poll_at = timezone.now() + timedelta(seconds=countdown)
        run.save()
        return countdown
    _log(run, "done", outcome.detail)
    if outcome.finished:  # promoted automatically: receivers hear of it as of an approval
        run.next_poll_at = None
        with transaction.atomic():
            run.save()
            if run.state == State.APPROVED:
                events.training_run_event(run, events.Event.Type.RUN_PROMOTED)
        return None
    following = names.index(outcome.skip_to) if outcome.skip_to else names.index(run.step) + 1
    if following >= len(names):
        run.state, run.next_poll_at = State.AWAITING_DECISION, None
        with transaction.atomic():
            run.save()
            events.training_run_event(run, events.Event.Type.RUN_AWAITING_DECISION)
        return None
    run.step, run.polls, run.next_poll_at = names[following], 0, timezone.now()
    run.save()
    return 0


def _stop(run: TrainingRun, state: str, reason: str) -> None:
    _log(run, "failed" if state == State.FAILED else "stopped", reason)
    run.state, run.reason, run.next_poll_at = state, reason[:1000], None
    run.save()
    return None


def _log(run: TrainingRun, status: str, detail: str) -> None:
    """One log line per step; repeated checks of a waiting step update its line."""
    entry = {"step": run.step, "status": status, "detail": detail[:1000], "at": timezone.now().isoformat()}
    if run.steps and run.steps[-1]["step"] == run.step and run.steps[-1]["status"] == "waiting":
        run.steps[-1] = entry
    else:
        run.steps.append(entry)


def resume_overdue_runs(*, limit: int = 100) -> int:
    """Re-send the next step of runs nobody is working on (lost message, dead worker)."""
    overdue = TrainingRun.objects.filter(state__in=[State.QUEUED, State.RUNNING],
                                         next_poll_at__lt=timezone.now() - OVERDUE_AFTER)
    count = 0
    for run_id, token in overdue.values_list("pk", "token")[:limit]:
        send(run_id, token)
        count += 1
    return count


# --- The decision -------------------------------------------------------------------------------


class DecisionError(Exception):
    """The run is not waiting for a decision (decided already, or still running)."""


def decide(*, run: TrainingRun, approve: bool, user, apply_thresholds: bool = True) -> TrainingRun:
    """A project admin's verdict on a compared candidate. Approval activates it (the active model
    of that backend steps down) and, for Custom Labels, points the project at the new version; a
    local head's calibrated thresholds are applied too unless ``apply_thresholds`` is off."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update(of=("self",)).select_related("project", "candidate").get(pk=run.pk)
        if run.state != State.AWAITING_DECISION:
            raise DecisionError(f"Run #{run.pk} is {run.get_state_display().lower()}: there is nothing to decide.")
        run.decided_by, run.decided_at = user, timezone.now()
        run.state = State.APPROVED if approve else State.REJECTED
        if approve and run.kind == Kind.LOCAL:
            Project.objects.select_for_update(no_key=True).get(pk=run.project_id)
            promotion.approve(run, user=user, apply_thresholds=apply_thresholds)
        elif approve:
            _activate(run)
        run.step = "decision"
        _log(run, "done", f"{'Approved' if approve else 'Rejected'} by {user}.")
        run.save()
        if approve:
            events.training_run_event(run, events.Event.Type.RUN_PROMOTED)
    if not approve and run.kind == Kind.CUSTOM_LABELS and run.start_model and run.aws.get("project_version_arn"):
        # A rejected candidate bills by the hour while it runs: stop it now (after the commit,
        # so a refused call leaves the decision standing and says so in the log).
        run.steps[-1]["detail"] += " " + hosting.stop_rejected(run.project, run.aws["project_version_arn"])
        run.save(update_fields=["steps", "updated_at"])
    return run


def _activate(run: TrainingRun) -> None:
    candidate = run.candidate
    project = Project.objects.select_for_update(no_key=True).get(pk=run.project_id)
    ModelVersion.objects.filter(project=project, backend=candidate.backend, is_active=True).update(is_active=False)
    ModelVersion.objects.filter(pk=candidate.pk).update(is_active=True, note=f"Approved in training run #{run.pk}.")
    if candidate.backend == "custom_labels":
        current = project.backend_config if project.backend == "custom_labels" else {}
        project.backend, project.backend_config = "custom_labels", {**_without_region(current), **candidate.config}
        project.save(update_fields=["backend", "backend_config"])
