"""Retrain the local backend's trained head: a deterministic stratified split of the human labels,
a head fitted on the train part, measured on the test part, stored as an inactive model version."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from classify.backends.local import fit_head
from classify.models import ModelVersion, Project, TrainingRun

from .data import labelled_examples
from .evaluation import evaluate_head, stratified_split
from .outcomes import Done, StepFailed

TEST_SHARE = 0.2
SEED = 0


def unique_examples(project: Project) -> tuple[list[str], np.ndarray, list[str]]:
    """The project's labelled examples, each picture once (the first label it was given wins),
    so no image sits in both the train and the test split."""
    keys, embeddings, names = labelled_examples(project)
    seen, keep = set(), []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return [keys[i] for i in keep], embeddings[keep], [names[i] for i in keep]


def too_few_labels(project: Project, counts: dict[str, int]) -> str:
    """Why a head cannot be trained yet, in words: how many labels each class has and needs."""
    names = [label.name for label in project.labels.all()]
    have = ", ".join(f"{name} {counts.get(name, 0)}" for name in names + sorted(set(counts) - set(names)))
    return ("Not enough labelled pictures to train and test a head: it needs at least two classes, and 2 or more "
            "labelled items or exemplars in every class that has any. "
            f"So far: {have}. Review more items or add exemplars, then retrain.")


def fit_candidate(run: TrainingRun) -> Done:
    project = run.project
    keys, embeddings, names = unique_examples(project)
    counts = {name: names.count(name) for name in sorted(set(names))}
    if len(counts) < 2 or min(counts.values()) < 2:
        raise StepFailed(too_few_labels(project, counts))
    train, test = stratified_split(keys, names, test_share=TEST_SHARE, seed=SEED)
    fit = fit_head(embeddings[train], [names[i] for i in train], seed=SEED)
    metrics = evaluate_head(fit.head, embeddings[test], [names[i] for i in test],
                            target_precision=project.target_precision)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # version numbers are per project
        number = ModelVersion.objects.filter(project=project, backend="local").count() + 1
        run.candidate = ModelVersion.objects.create(
            project=project, backend="local", version=f"head-{number}", artifact=fit.head.to_bytes(),
            classes=list(fit.head.classes), n_train=len(train), n_test=len(test),
            held_out_accuracy=metrics["accuracy"], f1=metrics["macro_f1"], metrics=metrics,
            human_labels_seen=len(names), note=f"Training run #{run.pk}; not active until approved.",
        )
    run.metrics = metrics
    return Done(f"Trained head-{number} on {len(train)} labels, tested on {len(test)}: "
                f"accuracy {metrics['accuracy']:.1%}, macro F1 {metrics['macro_f1']:.3f}.")
