"""Items, predictions and decisions made directly at chosen times (no pipeline, no image files):
the rollups only read these rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from classify.models import Item, Label, Prediction, Project
from classify.services import budgets
from reviewer.models import Decision


def seed_item(project: Project, *, at: datetime, top_label: str, top_score: float = 0.9,
              decision: str = Prediction.Decision.NEEDS_REVIEW, status: str | None = None, label: str | None = None,
              labelled_after: timedelta | None = None, latency_ms: float = 20.0, cost: float = 0.0,
              reused: bool = False, backend: str = "colour", duplicate_of: Item | None = None, audit: bool = False,
              reviews_needed: int = 1, predict: bool = True) -> Item:
    """An item uploaded at ``at`` and scored a second later; with ``label`` (and ``labelled_after``)
    a person labelled it, else auto-accepted items carry their top class."""
    status = status or (Item.Status.REVIEWED if label else decision)
    final = label or (top_label if status == Item.Status.AUTO_ACCEPTED else None)
    label_row = Label.objects.get(project=project, name=final) if final else None
    item = Item.objects.create(
        project=project, image="items/none.jpg", sha256=uuid.uuid4().hex * 2, width=10, height=10,
        status=status, top_label=top_label, top_score=top_score, margin=0.1, label=label_row, backend=backend,
        duplicate_of=duplicate_of, audit=audit, reviews_needed=reviews_needed,
    )
    labelled_at = at + labelled_after if label and labelled_after is not None else (at + timedelta(minutes=5) if label else None)
    Item.objects.filter(pk=item.pk).update(created_at=at, labelled_at=labelled_at)
    if not predict:
        item.refresh_from_db()
        return item
    earlier = Prediction.objects.filter(item__project=project).first() if reused else None
    prediction = Prediction.objects.create(
        item=item, backend=backend, model_version="v1", scores={top_label: top_score}, top_label=top_label,
        top_score=top_score, margin=0.1, latency_ms=0.0 if reused else latency_ms, thresholds={}, decision=decision,
        reason="test", cost_usd=0 if reused else cost, saved_usd=cost if reused else 0, reused_from=earlier,
    )
    Prediction.objects.filter(pk=prediction.pk).update(created_at=at + timedelta(seconds=1))
    budgets.add_to_day(project_id=project.pk, backend=backend, cost_usd=prediction.cost_usd,
                       at=at + timedelta(seconds=1))  # as recording a paid call does (the budgets read it)
    item.refresh_from_db()
    return item


def seed_decision(item: Item, reviewer, *, at: datetime, label: str | None = None, kind: str = Decision.Kind.LABEL,
                  seconds: float | None = 4.0, agrees: bool | None = None, undone: bool = False) -> Decision:
    label_row = Label.objects.get(project=item.project, name=label) if label else None
    decision = Decision.objects.create(item=item, reviewer=reviewer, kind=kind, label=label_row, seconds_spent=seconds,
                                       audit=item.audit, agrees=agrees, undone=undone)
    Decision.objects.filter(pk=decision.pk).update(created_at=at)
    return decision


def seed_week(project: Project, reviewers: list, *, now: datetime, seed: int = 7) -> int:
    """A week of believable traffic for the dashboard: uploads every two hours, auto-accepts and
    reviews by several people (some audits, consensus pairs, undos), two backends, a few rejected
    and duplicate uploads, backlog snapshots, and in the last day a shift towards ``red`` (drift).
    Returns the number of items made."""
    import random

    from dashboard.models import StatusSnapshot

    rng = random.Random(seed)
    labels = {label.name: label for label in Label.objects.filter(project=project)}
    names = ["red", "green", "blue"]
    made, spans = 0, []
    for step in range(7 * 12, 0, -1):
        at = now - timedelta(hours=2 * step) + timedelta(minutes=rng.randint(0, 50))
        recent = now - at < timedelta(hours=24)
        for _ in range(rng.randint(4, 9)):
            weights = (7, 1.5, 1.5) if recent else (4, 3.5, 2.5)
            top = rng.choices(names, weights)[0]
            score = min(0.99, max(0.3, rng.gauss(0.8 if top != "blue" else 0.7, 0.12)))
            auto = score >= labels[top].accept_threshold
            audit = auto and rng.random() < 0.15
            right = rng.random() < (0.95 if score > 0.8 else 0.7)
            human = top if right else rng.choice([n for n in names if n != top])
            backend = "rekognition" if rng.random() < 0.6 else "local"
            item = seed_item(project, at=at, top_label=top, top_score=round(score, 3),
                             decision=Prediction.Decision.AUTO_ACCEPTED if auto else Prediction.Decision.NEEDS_REVIEW,
                             status=None if not (auto and not audit) else Item.Status.AUTO_ACCEPTED,
                             label=None if auto and not audit else (human if rng.random() < 0.85 or audit else None),
                             labelled_after=timedelta(minutes=min(rng.randint(3, 600), (now - at) // timedelta(minutes=1) - 5)),
                             backend=backend,
                             cost=0.001 if backend == "rekognition" else 0.0, latency_ms=rng.uniform(8, 900),
                             reused=rng.random() < 0.05, audit=audit, reviews_needed=2 if score < 0.5 else 1)
            made += 1
            if rng.random() < 0.05:  # a too-dark upload and a re-upload of this picture
                seed_item(project, at=at, top_label="", status=Item.Status.REJECTED, predict=False)
                seed_item(project, at=at, top_label=top, top_score=round(score, 3), reused=True, duplicate_of=item,
                          decision=Prediction.Decision.NEEDS_REVIEW, backend=backend, cost=0.001)
                made += 2
            spans.append((item.created_at, item.labelled_at if item.status == Item.Status.REVIEWED else
                          (None if item.status == Item.Status.NEEDS_REVIEW else item.created_at)))
            if item.status == Item.Status.REVIEWED:
                who = rng.choice(reviewers)
                when = item.labelled_at
                seed_decision(item, who, at=when, label=human, seconds=rng.lognormvariate(1.6, 0.6))
                if item.reviews_needed == 2:
                    other = rng.choice([r for r in reviewers if r != who])
                    same = rng.random() < 0.75
                    seed_decision(item, other, at=when - timedelta(minutes=2), label=human if same else top,
                                  agrees=same, seconds=rng.lognormvariate(1.8, 0.5))
                    Decision.objects.filter(item=item, reviewer=who).update(agrees=True)
                if rng.random() < 0.05:
                    seed_decision(item, who, at=when + timedelta(seconds=20), kind=Decision.Kind.UNDO, seconds=None)
    hours = [now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h) for h in range(7 * 24, -1, -1)]
    StatusSnapshot.objects.bulk_create(
        StatusSnapshot(project=project, hour=hour, status=Item.Status.NEEDS_REVIEW,
                       count=sum(1 for start, end in spans if start <= hour and (end is None or end > hour)))
        for hour in hours)
    return made
