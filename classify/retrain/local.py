"""Retrain the local backend's trained head and measure it honestly.

Every human label (and exemplar) is scored out of fold (k-fold cross-validation on the stored
embeddings: no image is decoded again), the per-class thresholds are calibrated on those scores
(``calibration.calibrate``), and the head activated on promotion is fitted on all of them. The
active model is measured on the same labels: a zero-shot mapping by its own scores, an active
head by the same out-of-fold procedure restricted to the labels it had when it was fitted.
"""

from __future__ import annotations

import functools

import numpy as np
from django.db import transaction

from classify.backends.local import fit_full, fit_scorer, should_whiten, zero_shot_top
from classify.calibration import Calibration, Scored, calibrate, out_of_fold
from classify.models import ModelVersion, Project, TrainingRun
from classify.services.scoring import class_specs

from .data import Examples, examples, unlabelled_pool
from .evaluation import classification_metrics
from .outcomes import Done, StepFailed

SEED = 0


def class_names(project: Project) -> tuple[list[str], str]:
    labels = list(project.labels.all())
    return [label.name for label in labels], next(label.name for label in labels if label.is_unknown)


def too_few_labels(project: Project, counts: dict[str, int]) -> str:
    """Why a head cannot be trained yet, in words: how many labels each class has and needs."""
    names = [label.name for label in project.labels.all()]
    have = ", ".join(f"{name} {counts.get(name, 0)}" for name in names + sorted(set(counts) - set(names)))
    return ("Not enough labelled pictures to train and test a head: it needs at least two classes, and 2 or more "
            "labelled items or exemplars in every class that has any. "
            f"So far: {have}. Review more items or add exemplars, then retrain.")


def fit_candidate(run: TrainingRun) -> Done:
    """Fit the head on every label, score each label out of fold, calibrate, and measure the
    active model on the same labels; the candidate is stored inactive (``head-N``)."""
    project = run.project
    data = examples(project)
    counts = data.counts()
    if len(counts) < 2 or min(counts.values()) < 2:
        raise StepFailed(too_few_labels(project, counts))
    classes, unknown = class_names(project)
    pool = unlabelled_pool(project)
    whiten = should_whiten(len(data.names) + len(pool))  # one procedure for the folds and the head
    fit = functools.partial(fit_scorer, unlabelled=pool, whiten=whiten)
    head = fit_full(data.embeddings, data.names, unlabelled=pool, whiten=whiten)
    scored = out_of_fold(data.embeddings, data.names, data.keys, fit=fit, seed=SEED)
    calibration = calibrate(scored, classes=classes, target=project.target_precision, unknown=unknown)
    metrics = classification_metrics(scored.truths, scored.predicted, scored.scores,
                                     target_precision=project.target_precision)
    metrics.update(calibration=calibration.as_dict(), coverage=calibration.coverage, evaluated="out of fold")
    metrics["active"] = measure_active(project, data, classes=classes, unknown=unknown, pool=pool)
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)  # version numbers are per project
        number = ModelVersion.objects.filter(project=project, backend="local").count() + 1
        run.candidate = ModelVersion.objects.create(
            project=project, backend="local", version=f"head-{number}", artifact=head.to_bytes(),
            classes=list(head.classes), n_train=len(data.names), n_test=len(data.names),
            held_out_accuracy=metrics["accuracy"], f1=metrics["macro_f1"], metrics=metrics,
            coverage=calibration.coverage, human_labels_seen=len(data.names),
            note=f"Training run #{run.pk}.",
        )
    run.metrics = metrics
    return Done(f"Trained head-{number} on {len(data.names)} labels. Out of fold: accuracy {metrics['accuracy']:.1%}, "
                f"{describe(calibration)}.")


def describe(calibration: Calibration) -> str:
    if not calibration.accepted:
        return f"no class can auto-accept yet at {calibration.target:.0%} precision"
    return (f"auto-accepts {calibration.coverage:.0%} of the labels at {calibration.target:.0%} precision "
            f"(measured {calibration.precision:.1%}, lower bound {calibration.lower:.1%})")


def measure_active(project: Project, data: Examples, *, classes: list[str], unknown: str,
                   pool: np.ndarray | None = None) -> dict:
    """The active local model's calibration on the same labels, as stored on the run.

    Zero-shot (no active head): its own scores, which never learnt from any label. An active
    head: out of fold, each fold model learning only from labels the head had when it was fitted.
    ``own_scores`` says which: only thresholds calibrated on a model's own scores may be applied
    to it (``promotion.coverage_gate``).
    """
    active = ModelVersion.objects.filter(project=project, backend="local", is_active=True).first()
    mode = project.backend_config.get("mode", "auto") if project.backend == "local" else "auto"
    if active is not None and mode != "zero_shot":
        had = [when is not None and when <= active.created_at for when in data.labelled_at]
        whiten = should_whiten(len(data.names) + (0 if pool is None else len(pool)))
        fit = functools.partial(fit_scorer, unlabelled=pool, whiten=whiten)
        scored = out_of_fold(data.embeddings, data.names, data.keys, fit=fit, seed=SEED, trainable=had)
        name = active.version
    elif mode == "trained":
        return {"model": "untrained", "coverage": 0.0, "accuracy": 0.0, "calibration": None}
    else:
        specs = class_specs(project, list(project.labels.all()), backend="local")
        predicted, scores = zero_shot_top(data.embeddings, specs)
        scored, name = Scored(predicted, scores, list(data.names)), "zero-shot mapping"
    calibration = calibrate(scored, classes=classes, target=project.target_precision, unknown=unknown)
    accuracy = sum(p == t for p, t in zip(scored.predicted, scored.truths, strict=True)) / max(1, len(scored.truths))
    return {"model": name, "coverage": calibration.coverage, "accuracy": accuracy, "calibration": calibration.as_dict(),
            "own_scores": active is None or mode == "zero_shot"}
