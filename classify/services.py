"""Writes: creating projects, taking uploads, moving items through their states, refitting.

Every status change is a conditional UPDATE checked against ``ALLOWED_TRANSITIONS``, so two
workers (or a worker and the sweeper) can never both move the same item.
"""

from __future__ import annotations

import io
import logging
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.text import get_valid_filename

from . import pipeline
from .backends import BackendError, ClassSpec, ModelArtifact, Scores, get_backend
from .images import ImageRejected, remember_source
from .models import (
    ALLOWED_TRANSITIONS,
    BakeoffRun,
    Exemplar,
    Item,
    Label,
    Membership,
    ModelVersion,
    Prediction,
    Project,
)

log = logging.getLogger(__name__)
Status = Item.Status
UNKNOWN_LABEL = "unknown"
BROKER_DOWN_REASON = "Waiting for the task queue (broker unreachable); it will be retried automatically."


# --- Projects ----------------------------------------------------------------------------------


def create_project(
    *, slug: str, name: str = "", labels: Sequence[str], backend: str = "", created_by=None
) -> Project:
    """A project with its classes and the unknown/other class every project has.

    For the local backend, each class starts with the ImageNet classes whose names match it.
    """
    from .backends.local import suggest_imagenet_classes

    backend = backend or settings.LOUPE_DEFAULT_BACKEND
    names = [name.strip() for name in labels if name.strip()]
    if len(set(names)) != len(names) or UNKNOWN_LABEL in names:
        raise ValueError(f"class names must be distinct and not {UNKNOWN_LABEL!r}")
    with transaction.atomic():
        project = Project.objects.create(slug=slug, name=name or slug, backend=backend, created_by=created_by)
        for order, label in enumerate(names):
            mappings = {"local": suggest_imagenet_classes(label)} if backend == "local" else {}
            Label.objects.create(project=project, name=label, order=order, mappings=mappings)
        Label.objects.create(
            project=project, name=UNKNOWN_LABEL, order=len(names), is_unknown=True,
            description="None of the project's classes: the rejection class.",
        )
        if created_by is not None:
            Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


# --- Intake ------------------------------------------------------------------------------------


def clean_filename(filename: str) -> str:
    """The client's filename reduced to harmless metadata (never used as a storage key)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in "\u202a\u202b\u202c\u202d\u202e")
    try:
        name = get_valid_filename(base)
    except Exception:  # get_valid_filename refuses names like "..": keep none
        return ""
    if len(name) > 255:  # keep the extension, shorten the stem
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[: 254 - len(suffix)]}.{suffix}" if dot and len(suffix) < 16 else name[:255]
    return name


def human_size(n_bytes: float) -> str:
    if n_bytes < 2**20:
        return f"{n_bytes:,.0f} bytes"
    return f"{n_bytes / 2**20:,.1f} MB".replace(".0 MB", " MB")


def check_upload_size(size: int) -> None:
    if size > settings.LOUPE_MAX_UPLOAD_BYTES:
        raise ImageRejected(f"The file is {human_size(size)}; the limit is {human_size(settings.LOUPE_MAX_UPLOAD_BYTES)}.")


def ingest_upload(*, project: Project, data: bytes, filename: str, uploaded_by=None) -> Item:
    """Validate, normalise and store one upload, then hand it to a worker after commit.

    Raises ``images.ImageRejected`` (with the reason to show) before anything is stored when the
    bytes are not a usable image. A decodable image that fails the project's quality checks is
    stored as ``rejected`` with the reasons and never reaches a backend. A picture the project has
    already seen is linked to its first copy (``duplicate_of``); its scores will be reused.
    """
    check_upload_size(len(data))
    prepared = pipeline.preprocess(data, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS)
    problems = pipeline.check_quality(prepared, rules=project.quality_rules)
    duplicate = Item.objects.filter(project=project, sha256=prepared.sha256).order_by("pk").first()
    item = Item(
        project=project, original_filename=clean_filename(filename), source_format=prepared.format,
        sha256=prepared.sha256, phash=prepared.phash, width=prepared.width, height=prepared.height,
        uploaded_by=uploaded_by, duplicate_of=duplicate,
        near_duplicate_of=None if duplicate else find_near_duplicate(project, prepared.phash),
        status=Status.REJECTED if problems else Status.RECEIVED, status_reason=" ".join(problems)[:500],
    )
    item.image.save("upload.jpg", ContentFile(prepared.jpeg), save=False)
    try:
        if project.keep_originals:
            item.original.save(f"original.{prepared.format.lower()}", ContentFile(data), save=False)
        with transaction.atomic():
            item.save()
            if not problems:
                schedule_classification(item.pk)
    except Exception:
        item.image.delete(save=False)  # nothing half-stored
        if item.original:
            item.original.delete(save=False)
        raise
    return item


NEAR_DUPLICATE_BITS = 4
NEAR_DUPLICATE_WINDOW = 5000


def find_near_duplicate(project: Project, phash: int) -> Item | None:
    """A recent item of the project whose perceptual hash is within a few bits of ``phash``.

    Best effort by design: it looks at the last NEAR_DUPLICATE_WINDOW items (the flag helps a
    person notice a re-upload; exact duplicates are caught by the SHA-256 in any case).
    """
    from .images import hamming

    recent = Item.objects.filter(project=project, phash__isnull=False).order_by("-pk")
    for item_id, other in recent.values_list("pk", "phash")[:NEAR_DUPLICATE_WINDOW]:
        if hamming(phash, other) <= NEAR_DUPLICATE_BITS:
            return Item.objects.get(pk=item_id)
    return None


def schedule_classification(item_id: int) -> None:
    """Hand the item to the task queue once the surrounding transaction commits."""
    transaction.on_commit(lambda: hand_to_queue(item_id))


def hand_to_queue(item_id: int) -> bool:
    """Publish the classification task. With the broker down, the item keeps its state and a
    reason saying so, and the sweeper publishes it later: the database is the source of truth.
    """
    from .tasks import classify_item

    try:
        classify_item.delay(item_id)
    except Exception as exc:  # kombu raises various connection errors; all mean "not queued"
        log.warning("could not queue item %s: %s", item_id, exc)
        Item.objects.filter(pk=item_id, status__in=[Status.RECEIVED, Status.QUEUED]).update(
            status_reason=BROKER_DOWN_REASON,
            updated_at=timezone.now(),
        )
        return False
    now = timezone.now()
    if not Item.objects.filter(pk=item_id, status=Status.RECEIVED).update(
        status=Status.QUEUED, status_reason="", enqueued_at=now, updated_at=now
    ):  # re-published by the sweeper: refresh the clock; keep the reason unless it was the broker's
        Item.objects.filter(pk=item_id, status=Status.QUEUED).update(
            enqueued_at=now, updated_at=now,
            status_reason=Case(When(status_reason=BROKER_DOWN_REASON, then=Value("")), default=F("status_reason")),
        )
    return True


# --- State transitions -------------------------------------------------------------------------


def transition(item_id: int, *, to: str, reason: str = "", only_from: Iterable[str] | None = None, **fields) -> bool:
    """Move an item to ``to`` if the state machine allows it from where it stands now.

    Returns False (and changes nothing) when the item is not in an allowed state: someone else
    moved it first. Extra ``fields`` are written in the same UPDATE.
    """
    sources = [state for state, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    if only_from is not None:
        sources = [state for state in sources if state in set(only_from)]
    updated = Item.objects.filter(pk=item_id, status__in=sources, **fields.pop("where", {})).update(
        status=to, status_reason=reason[:500], updated_at=timezone.now(), **fields
    )
    return updated == 1


def start_classification(*, item_id: int) -> Item | None:
    """Claim an item for one worker: a conditional UPDATE that also counts the attempt.

    Returns None when there is nothing to do (already claimed, finished, or deleted). An item
    whose earlier attempts never finished (the worker died, as a poison image can make it) ends
    ``failed`` once it has used ``LOUPE_MAX_ATTEMPTS``, instead of looping forever.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LOUPE_STUCK_CLASSIFYING_AFTER)
    claim = uuid.uuid4()
    claimed = Item.objects.filter(
        Q(status__in=[Status.RECEIVED, Status.QUEUED]) | Q(status=Status.CLASSIFYING, claimed_at__lt=stale),
        pk=item_id,
    ).update(status=Status.CLASSIFYING, claim=claim, claimed_at=now, updated_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return None
    item = Item.objects.select_related("project").get(pk=item_id)
    if item.attempts > settings.LOUPE_MAX_ATTEMPTS:
        last = item.status_reason or "the worker stopped before finishing"
        mark_failed(item, reason=gave_up(item.attempts - 1, last))
        return None
    return item


def gave_up(attempts: int, last_problem: str) -> str:
    """The one wording of "this item used up its attempts"."""
    return f"Gave up after {attempts} attempt{'s' if attempts != 1 else ''}. Last problem: {last_problem}"


def mark_failed(item: Item, *, reason: str) -> bool:
    return transition(item.pk, to=Status.FAILED, reason=reason, where={"claim": item.claim})


def requeue_after_error(item: Item, *, reason: str) -> bool:
    """Put a claimed item back in the queue state before a retry is scheduled."""
    return transition(
        item.pk, to=Status.QUEUED, reason=reason, only_from=[Status.CLASSIFYING],
        where={"claim": item.claim}, enqueued_at=timezone.now(),
    )


def route_to_review_after_backend_error(item: Item, error: BackendError) -> bool:
    """The backend could not score it (retries exhausted, or an error retrying cannot fix):
    a person decides instead. Nothing is dropped."""
    prefix = "Backend unavailable" if error.retryable else "Backend error"
    return transition(
        item.pk, to=Status.NEEDS_REVIEW, reason=f"{prefix}: {error}", only_from=[Status.CLASSIFYING],
        where={"claim": item.claim},
    )


# --- Classification ----------------------------------------------------------------------------


def class_specs(project: Project, labels: Sequence[Label], *, backend: str = "") -> list[ClassSpec]:
    return [
        ClassSpec(
            name=label.name, is_unknown=label.is_unknown, description=label.description,
            mapping=_mapping(label.mappings.get(backend or project.backend, ())),
        )
        for label in labels
    ]


def _mapping(value) -> tuple[str, ...]:
    """A class's names for a backend: a list, or one name given as a plain string."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(name) for name in value or ())


def build_backend(project: Project, labels: Sequence[Label], *, name: str = "", config: dict | None = None):
    """A backend for the project: by default as configured right now; ``name``/``config`` pin the
    one an item started with. The active fitted model of that backend comes along, if any."""
    name = name or project.backend
    config = project.backend_config if config is None else config
    active = ModelVersion.objects.filter(project=project, backend=name, is_active=True).first()
    model = ModelArtifact(version=active.version, data=bytes(active.artifact)) if active else None
    return get_backend(name, classes=class_specs(project, labels, backend=name), config=config, model=model)


def pin_backend(item: Item) -> None:
    """The first claim of an item records the project's backend and settings; retries (even after
    an admin switches the project's backend) finish with them."""
    if not item.backend:
        item.backend, item.backend_config = item.project.backend, item.project.backend_config
        Item.objects.filter(pk=item.pk, backend="").update(backend=item.backend, backend_config=item.backend_config)


def classify_item(item: Item) -> Prediction | None:
    """Score a claimed item with its project's backend, route it, and record both.

    An identical image (same pixels) already scored by the same backend and model version is not
    sent again: its scores are reused. Raises ``BackendError`` for the task to retry or route.
    """
    labels = list(item.project.labels.all())
    pin_backend(item)
    backend = build_backend(item.project, labels, name=item.backend, config=item.backend_config)
    earlier = reusable_prediction(item, backend_name=backend.name, model_version=backend.model_version)
    if earlier is not None:
        scores, latency = Scores(earlier.scores, earlier.model_version, raw=earlier.raw), 0.0
    else:
        scores, latency = pipeline.classify(load_image(item, min_side=getattr(backend, "input_side", None)), backend)
    rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin) for label in labels}
    unknown = next(label.name for label in labels if label.is_unknown)
    routing = pipeline.route(scores.scores, rules=rules, unknown=unknown)
    return record_prediction(item, backend.name, scores, routing, latency, rules, earlier, labels=labels)


def reusable_prediction(item: Item, *, backend_name: str, model_version: str) -> Prediction | None:
    return (
        Prediction.objects.filter(
            item__project_id=item.project_id, item__sha256=item.sha256, backend=backend_name,
            model_version=model_version,
        )
        .exclude(item_id=item.pk)
        .order_by("-created_at")
        .first()
    )


def load_image(item: Item | Exemplar, *, min_side: int | None = None):
    """The stored derivative as RGB. With ``min_side`` (a backend that shrinks images anyway), a
    JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg, never below ``min_side`` on either side."""
    from PIL import Image

    with item.image.open("rb") as handle:
        data = handle.read()
    image = Image.open(io.BytesIO(data))
    if min_side:
        image.draft("RGB", (min_side, min_side))
    image.load()
    if image.mode != "RGB":
        return image.convert("RGB")
    return image if min_side else remember_source(image, data)


def record_prediction(item, backend_name, scores, routing, latency, rules, reused_from, *, labels) -> Prediction | None:
    """Store the prediction and the routed status together, if this worker still holds the claim.

    A share of each class's auto-accepted items (``Label.audit_rate``) goes to review as well,
    unannounced to the reviewer, so the error rate of auto-accept can be measured. Items scored
    below the project's consensus score need ``consensus_reviews`` independent reviews.
    """
    project = item.project
    labels_by_name = {label.name: label for label in labels}
    top = labels_by_name.get(routing.top_label)
    status, reason = routing.decision, routing.reason
    audit = status == Status.AUTO_ACCEPTED and top is not None and random.random() < top.audit_rate
    if audit:
        status, reason = Status.NEEDS_REVIEW, f"Sampled for a check of auto-accept ({routing.reason})"
    needs = project.consensus_reviews if routing.top_score < project.consensus_below else 1
    fields = {
        "label": top if status == Status.AUTO_ACCEPTED else None, "top_label": routing.top_label,
        "top_score": routing.top_score, "margin": routing.margin, "audit": audit, "reviews_needed": needs,
        "escalated": False,
    }
    if scores.embedding is not None:
        fields["embedding"] = scores.embedding
    with transaction.atomic():
        if not transition(item.pk, to=status, reason=reason, only_from=[Status.CLASSIFYING],
                          where={"claim": item.claim}, **fields):
            return None
        return Prediction.objects.create(
            item=item, backend=backend_name, model_version=scores.model_version, scores=scores.scores,
            top_label=routing.top_label, top_score=routing.top_score, margin=routing.margin,
            latency_ms=round(latency, 3), decision=routing.decision, reason=routing.reason,
            thresholds={name: {"threshold": r.threshold, "margin": r.margin} for name, r in rules.items()},
            raw=scores.raw, reused_from=reused_from,
            cost_usd=0 if reused_from else round(scores.cost_usd, 6),
            saved_usd=reused_from.cost_usd if reused_from else 0,
        )


def reclassify(*, items: Iterable[Item]) -> int:
    """Send items (failed, rejected, or already decided) through classification again."""
    count = 0
    for item in items:
        if transition(item.pk, to=Status.QUEUED, reason="Re-queued by an admin.", attempts=0,
                      enqueued_at=timezone.now(), backend="", backend_config=None):
            schedule_classification(item.pk)
            count += 1
    return count


# --- The sweeper ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    failed: int


def sweep_stuck_items(*, limit: int = 1000) -> SweepResult:
    """Re-publish items the broker may have lost; fail those that used up their attempts.

    - ``received`` for longer than LOUPE_STUCK_RECEIVED_AFTER: never reached the broker.
    - ``queued`` since longer than LOUPE_STUCK_QUEUED_AFTER: the message may be gone.
    - ``classifying`` for longer than LOUPE_STUCK_CLASSIFYING_AFTER: the worker died mid-task.
    A duplicate message is harmless: ``start_classification`` lets only one worker claim.
    """
    now = timezone.now()
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    received = Item.objects.filter(status=Status.RECEIVED, updated_at__lt=ago(settings.LOUPE_STUCK_RECEIVED_AFTER))
    queued = Item.objects.filter(status=Status.QUEUED).filter(
        Q(enqueued_at__lt=ago(settings.LOUPE_STUCK_QUEUED_AFTER)) | Q(enqueued_at__isnull=True)
    )
    requeued = failed = 0
    for item_id in list(received.values_list("pk", flat=True)[:limit]) + list(queued.values_list("pk", flat=True)[:limit]):
        requeued += hand_to_queue(item_id)
    stuck = Item.objects.filter(status=Status.CLASSIFYING, claimed_at__lt=ago(settings.LOUPE_STUCK_CLASSIFYING_AFTER))
    for item in stuck[:limit]:
        if item.attempts >= settings.LOUPE_MAX_ATTEMPTS:
            failed += mark_failed(item, reason=gave_up(item.attempts, "the worker stopped mid-task."))
        elif requeue_after_error(item, reason="Re-queued: the worker stopped mid-task."):
            requeued += hand_to_queue(item.pk)
    return SweepResult(requeued=requeued, failed=failed)


def promote_to_exemplar(*, item: Item) -> Exemplar:
    """Make a labelled item an exemplar of its class (a copy: deleting the item keeps it)."""
    if item.label is None:
        raise ValueError(f"item #{item.pk} has no label yet")
    with item.image.open("rb") as handle:
        data = handle.read()
    exemplar = Exemplar(label=item.label, sha256=item.sha256, embedding=item.embedding)
    exemplar.image.save("exemplar.jpg", ContentFile(data), save=True)
    return exemplar


# --- The local model's trained head --------------------------------------------------------------


def human_label_count(project: Project) -> int:
    """Exemplars plus human-reviewed items: what the trained head learns from."""
    exemplars = Exemplar.objects.filter(label__project=project).count()
    return exemplars + Item.objects.filter(project=project, status=Status.REVIEWED, label__isnull=False).count()


def maybe_schedule_refit(project: Project) -> bool:
    """After ``refit_every`` new human labels, train a new head in the background.

    The head is a candidate: the training run measures it, compares it with the active model on
    recent items, and waits for a project admin to approve it (classify/retrain). Nothing starts
    while another local run is still open, or while a class has fewer than
    ``min_examples_per_class`` labels.
    """
    from .models import TrainingRun

    if project.refit_every == 0 or project.backend != "local":
        return False
    open_states = [TrainingRun.State.QUEUED, TrainingRun.State.RUNNING, TrainingRun.State.AWAITING_DECISION]
    if TrainingRun.objects.filter(project=project, kind=TrainingRun.Kind.LOCAL, state__in=open_states).exists():
        return False
    last = ModelVersion.objects.filter(project=project, backend="local").order_by("-created_at").first()
    new_labels = human_label_count(project) - (last.human_labels_seen if last else 0)
    if new_labels < project.refit_every or min(labels_per_class(project).values(), default=0) < max(
            project.min_examples_per_class, 2):
        return False
    from .retrain import start_local_training

    start_local_training(project=project)
    return True


def labels_per_class(project: Project) -> dict[str, int]:
    """Per class (unknown aside): exemplars plus human-reviewed items."""
    from django.db.models import Count, Q

    rows = project.labels.filter(is_unknown=False).annotate(
        exemplar_count=Count("exemplars", distinct=True),
        reviewed=Count("items", filter=Q(items__status=Status.REVIEWED), distinct=True),
    )
    return {row.name: row.exemplar_count + row.reviewed for row in rows}


def labelled_examples(project: Project) -> tuple[list[str], np.ndarray, list[str]]:
    """Every exemplar and human-labelled item as (image hash, embedding, class name): the hash is
    the key a train/test split is made on; embeddings are computed once and kept."""
    from .backends.local import INPUT_SIDE, embed

    keys, vectors, names = [], [], []
    for label in project.labels.prefetch_related("exemplars"):
        for exemplar in label.exemplars.all():
            if exemplar.embedding is None:
                exemplar.embedding = embed(load_image(exemplar, min_side=INPUT_SIDE))
                exemplar.save(update_fields=["embedding"])
            keys.append(exemplar.sha256 or f"exemplar:{exemplar.pk}")
            vectors.append(np.frombuffer(bytes(exemplar.embedding), dtype=np.float32))
            names.append(label.name)
    reviewed = Item.objects.filter(project=project, status=Status.REVIEWED, label__isnull=False).select_related("label")
    for item in reviewed.iterator():
        if item.embedding is None:
            item.embedding = embed(load_image(item, min_side=INPUT_SIDE))
            Item.objects.filter(pk=item.pk).update(embedding=item.embedding)
        keys.append(item.sha256 or f"item:{item.pk}")
        vectors.append(np.frombuffer(bytes(item.embedding), dtype=np.float32))
        names.append(item.label.name)
    return keys, (np.vstack(vectors) if vectors else np.zeros((0, 1280), np.float32)), names


# --- Bake-off ------------------------------------------------------------------------------------


def run_bakeoff(*, project: Project, backends: Sequence[str], configs: dict | None = None,
                sample: int | None = None, seed: int = 0) -> list:
    """Score each backend on the project's human-labelled items; a backend that cannot even be
    built (bad settings) gets a report with its error instead of stopping the others."""
    from . import bakeoff

    configs = configs or {}
    items = bakeoff.labelled_items(project, sample=sample, seed=seed)
    labels = list(project.labels.all())
    reports = []
    for name in backends:
        config = configs.get(name, project.backend_config if name == project.backend else {})
        try:
            backend = build_backend(project, labels, name=name, config=config)
        except BackendError as exc:
            reports.append(bakeoff.Report(backend=name, images=len(items), errors=len(items), first_error=str(exc)))
            continue
        images = ((load_image(item), item.label.name) for item in items)
        outcomes, first_error = bakeoff.evaluate(backend, images, labels)
        reports.append(bakeoff.metrics(name, outcomes, model_version=backend.model_version, first_error=first_error))
    return reports


def execute_bakeoff_run(run: BakeoffRun) -> BakeoffRun:
    """Run a stored bake-off and keep its results (or why it failed) on the row."""
    BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.RUNNING)
    try:
        reports = run_bakeoff(project=run.project, backends=run.backends, configs=run.configs, sample=run.sample)
    except Exception as exc:
        log.exception("bake-off %s failed", run.pk)
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.FAILED, error=str(exc)[:500],
                                                    finished_at=timezone.now())
    else:
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.DONE, finished_at=timezone.now(),
                                                    results=[report.as_dict() for report in reports])
    run.refresh_from_db()
    return run


def start_bakeoff(*, project: Project, backends: Sequence[str], configs: dict, sample: int | None, user) -> BakeoffRun:
    from .tasks import run_bakeoff as task

    run = BakeoffRun.objects.create(project=project, backends=list(backends), configs=configs, sample=sample,
                                    created_by=user)
    transaction.on_commit(lambda: task.delay(run.pk))
    return run
