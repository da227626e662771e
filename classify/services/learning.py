"""Writes that keep auto-accept's promise: applying calibrated thresholds (audited), promoting a
refit automatically, and pausing a class whose audited precision no longer holds.

A class's ``calibration`` (JSON on the Label) says which model and evidence its threshold came
from; ``Label.hold`` turns a missing threshold or a pause into "this class goes to review, and
why". Every change writes a ``ThresholdChange`` row: who (or "automatically"), before, after, and
the evidence.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from classify.backends.local import POOLED_DIM
from classify.calibration import CONFIDENCE, Calibration, Scored, calibrate, wilson_lower, wilson_upper
from classify.models import Item, Label, ModelVersion, Prediction, Project, ThresholdChange

Kind = ThresholdChange.Kind


# --- Applying a calibration ----------------------------------------------------------------------


def _state(labels) -> dict:
    return {label.name: {"threshold": label.accept_threshold, "margin": label.margin,
                         "paused": label.paused_reason, "hold": label.hold} for label in labels}


def apply_calibration(*, project: Project, calibration: dict, backend: str, model_version: str, user=None,
                      summary: str = "") -> ThresholdChange:
    """Set every class's threshold from ``calibration`` (``Calibration.as_dict()``), margins to 0
    (the calibrated rule is the threshold alone), and lift audit pauses of classes that got a
    threshold: the new evidence includes the audited items. Recorded as one ThresholdChange."""
    now = timezone.now()
    with transaction.atomic():
        labels = list(Label.objects.select_for_update().filter(project=project, is_unknown=False))
        before = _state(labels)
        resumed = []
        for label in labels:
            row = calibration["classes"].get(label.name)
            if row is None:
                continue
            label.calibration = {**row, "target": calibration["target"], "confidence": calibration["confidence"],
                                 "backend": backend, "model_version": model_version, "at": now.isoformat()}
            if row["threshold"] is not None:
                label.accept_threshold, label.margin = row["threshold"], 0.0
                if label.paused_reason:
                    resumed.append(label.name)
                    label.paused_reason, label.paused_at = "", None
            label.save(update_fields=["calibration", "accept_threshold", "margin", "paused_reason", "paused_at"])
        text = summary or (f"Thresholds for {calibration['target']:.0%} precision applied "
                           f"({'automatically' if user is None else f'by {user}'}).")
        if resumed:
            text += f" Auto-accept resumed for {', '.join(resumed)}."
        return ThresholdChange.objects.create(
            project=project, kind=Kind.CALIBRATION, backend=backend, model_version=model_version, summary=text[:500],
            before=before, after=_state(labels), calibration=calibration, user=user)


# --- Automatic promotion -------------------------------------------------------------------------


def provenance_text(candidate: ModelVersion, *, before: float, target: float, automatic: bool) -> str:
    how = "promoted automatically" if automatic else "approved"
    return f"{candidate.version}, {how}: coverage {before:.0%} → {candidate.coverage or 0:.0%} at {target:.0%}"


def activate_local(*, project: Project, candidate: ModelVersion, provenance: str, note: str) -> None:
    """Make ``candidate`` the project's active local head (the previous one steps down)."""
    ModelVersion.objects.filter(project=project, backend=candidate.backend, is_active=True).update(is_active=False)
    ModelVersion.objects.filter(pk=candidate.pk).update(is_active=True, note=note[:300], provenance=provenance[:300])
    candidate.is_active, candidate.provenance = True, provenance[:300]


def active_provenance(project: Project, backend: str) -> str:
    """What predictions of the backend's active model say about where it came from."""
    active = ModelVersion.objects.filter(project=project, backend=backend, is_active=True).first()
    return active.provenance if active else ""


# --- Verification in production ------------------------------------------------------------------


def audits_since(project: Project) -> dict[str, dict]:
    """Per class the model auto-accepted: audited items people have decided since the class's
    last calibration (all of them if it was never calibrated), and how many they confirmed."""
    since = {label.name: _when(label.calibration.get("at")) for label in project.labels.filter(is_unknown=False)}
    rows: dict[str, dict] = {name: {"checked": 0, "confirmed": 0} for name in since}
    audited = Item.objects.filter(project=project, audit=True, status=Item.Status.REVIEWED, label__isnull=False)
    for top, truth, when in audited.values_list("top_label", "label__name", "labelled_at").iterator():
        if top not in rows or (since[top] and when and when < since[top]):
            continue
        rows[top]["checked"] += 1
        rows[top]["confirmed"] += top == truth
    return rows


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def live_precision(project: Project) -> dict[str, dict]:
    """Per class: the audited precision since calibration with its interval (95% one-sided bounds
    each side), and the bound the promise rests on: the calibration's evidence plus the audits."""
    out = {}
    audits = audits_since(project)
    for label in project.labels.filter(is_unknown=False):
        row = audits[label.name]
        checked, confirmed = row["checked"], row["confirmed"]
        prior_n, prior_k = _prior(label)
        out[label.name] = {
            "checked": checked, "confirmed": confirmed,
            "precision": confirmed / checked if checked else None,
            "lower": wilson_lower(confirmed, checked) if checked else None,
            "upper": wilson_upper(confirmed, checked) if checked else None,
            "evidence": prior_n + checked, "bound": wilson_lower(prior_k + confirmed, prior_n + checked)
            if prior_n + checked else None,
            "calibrated": bool(label.calibration), "paused": label.paused_reason,
        }
    return out


def _prior(label: Label) -> tuple[int, int]:
    """The calibration's evidence for a class: its own accepted labels, or for a class that
    borrowed the pooled threshold, the pool's (what its threshold's bound rests on)."""
    calibration = label.calibration or {}
    if calibration.get("threshold") is None:
        return 0, 0
    if calibration.get("source") == "pooled":
        return calibration.get("pool_accepted", 0), calibration.get("pool_correct", 0)
    return calibration.get("accepted", 0), calibration.get("correct", 0)


def should_pause(label: Label, *, checked: int, confirmed: int, target: float) -> str:
    """Why auto-accept of ``label`` must pause, or "" if it may go on: when an audited mistake
    leaves the lower bound of the class's precision below the target. The bound is the one the
    promise rests on: the one-sided 95% Wilson lower bound of the calibration's evidence (its
    accepted labelled predictions, or the pool's for a class that borrowed the pooled threshold)
    plus the audits decided since. A threshold set by hand has no evidence: its audits alone count.

    Only a wrong audit lowers the bound, so confirmed audits never pause a class (a class with a
    hand-set threshold, whose few audits cannot reach the bound by themselves, is not paused for
    having few). The calibration chose the lowest threshold whose bound met the target, so its
    evidence sits just above it: one mistake among few audits pauses the class until a refit
    recalibrates with the audited items among its labels. That is the issue's rule, and the safe
    one; pausing only when the audits alone prove precision below the target (their upper bound)
    would let a class run on at 2 mistakes in 10 audits.
    """
    wrong = checked - confirmed
    if not wrong:
        return ""
    prior_n, prior_k = _prior(label)
    bound = wilson_lower(prior_k + confirmed, prior_n + checked)
    if bound >= target:
        return ""
    since = " since calibration" if label.calibration else ""
    evidence = (f"with the calibration's {prior_n} labelled predictions, " if prior_n else "")
    return (f"{wrong} of {checked} audited auto-accepts were wrong{since}: {evidence}precision is no longer "
            f"at least {target:.0%} at {CONFIDENCE:.0%} confidence (lower bound {bound:.1%}).")


def check_live_precision(*, project: Project, label_name: str) -> bool:
    """After an audit decision: pause the class if its audited precision broke the promise. The
    pause is recorded; items of the class go to review with the reason until a refit recovers it."""
    row = audits_since(project).get(label_name)
    if row is None:
        return False
    with transaction.atomic():
        label = Label.objects.select_for_update().filter(project=project, name=label_name, is_unknown=False).first()
        if label is None or label.paused_reason:
            return False
        reason = should_pause(label, checked=row["checked"], confirmed=row["confirmed"], target=project.target_precision)
        if not reason:
            return False
        before = _state([label])
        Label.objects.filter(pk=label.pk).update(paused_reason=reason[:500], paused_at=timezone.now())
        label.paused_reason = reason[:500]
        ThresholdChange.objects.create(project=project, kind=Kind.PAUSE, summary=f"{label.name}: {reason}"[:500],
                                       before=before, after=_state([label]), calibration={"audits": row})
    return True


def resume(*, label: Label, user) -> None:
    """A project admin lifts a pause by hand (recorded)."""
    with transaction.atomic():
        before = _state([label])
        Label.objects.filter(pk=label.pk).update(paused_reason="", paused_at=None)
        label.paused_reason = ""
        ThresholdChange.objects.create(project=label.project, kind=Kind.RESUME, user=user,
                                       summary=f"{label.name}: auto-accept resumed by {user}.",
                                       before=before, after=_state([label]))


# --- Calibration for any backend, from its reviewed items --------------------------------------


def reviewed_scores(project: Project, *, backend: str, model_version: str) -> Scored:
    """What the model said about items people then labelled: each reviewed item's prediction by
    this backend and model version, made before the person's label (so never learnt from it)."""
    rows = (Prediction.objects.filter(item__project=project, item__status=Item.Status.REVIEWED,
                                      item__label__isnull=False, backend=backend, model_version=model_version)
            .order_by("item_id", "-created_at").values_list("item_id", "top_label", "top_score", "item__label__name"))
    seen, predicted, scores, truths = set(), [], [], []
    for item_id, top, score, truth in rows.iterator():
        if item_id in seen:
            continue
        seen.add(item_id)
        predicted.append(top)
        scores.append(score)
        truths.append(truth)
    return Scored(predicted, scores, truths)


def suggest_thresholds(project: Project, *, backend: str, model_version: str) -> Calibration:
    """Thresholds for the project's target precision from the backend's own reviewed items."""
    labels = list(project.labels.all())
    unknown = next(label.name for label in labels if label.is_unknown)
    return calibrate(reviewed_scores(project, backend=backend, model_version=model_version),
                     classes=[label.name for label in labels], target=project.target_precision, unknown=unknown)


# --- Review order "learning" ---------------------------------------------------------------------

AUDIT_PRIORITY = -1.0  # audits first: they verify the promise, and nobody can tell them apart


def learning_priority(*, top_score: float, threshold: float, class_share: float, cluster_share: float = 0.0,
                      audit: bool = False) -> float:
    """Lower is reviewed sooner: an item scored near its class's threshold (where a label moves the
    threshold most), of a class, and a region of the embedding space, that people have labelled
    little (so reviews spread across classes and kinds of pictures)."""
    if audit:
        return AUDIT_PRIORITY
    return round(abs(top_score - threshold) + 0.5 * class_share + 0.5 * cluster_share, 6)


SHARES_SECONDS = 60  # how stale the cached class shares may be


def _shares_key(project: Project) -> str:
    return f"loupe:class-shares:{project.pk}:{project.created_at.timestamp():.6f}"


def class_shares(project: Project, *, fresh: bool = False) -> dict[str, float]:
    """Each class's share of the human labels so far, cached per project for ``SHARES_SECONDS``.

    Every item routed to review reads it: counting all of a project's labels per routed item would
    make routing cost grow with the project. A share a minute old orders reviews as well (it moves
    by a label in hundreds); ``refresh_learning_order`` recomputes it (``fresh``) after promotions.
    """
    key = _shares_key(project)
    try:
        cached = None if fresh else cache.get(key)
    except Exception:  # the cache is an optimisation: without it, count
        cached = None
    if cached is not None:
        return cached
    counts = dict(Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__isnull=False)
                  .values_list("label__name").annotate(n=Count("pk")).values_list("label__name", "n"))
    total = sum(counts.values())
    shares = {name: n / total for name, n in counts.items()} if total else {}
    try:
        cache.set(key, shares, SHARES_SECONDS)
    except Exception:  # noqa: S110  (the cache is an optimisation)
        pass
    return shares


CLUSTERS = 12


def refresh_learning_order(project: Project) -> int:
    """Recompute the learning priority of every item waiting for review, with embedding clusters
    (k-means over waiting and labelled items): run after thresholds change. Returns the count."""
    waiting = list(Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW)
                   .values_list("pk", "top_label", "top_score", "audit", "embedding"))
    if not waiting:
        return 0
    thresholds = dict(project.labels.values_list("name", "accept_threshold"))
    shares = class_shares(project, fresh=True)
    cluster_share = _cluster_shares(project, [row[4] for row in waiting])
    rows = [Item(pk=pk, learning_priority=learning_priority(
                top_score=score or 0.0, threshold=thresholds.get(top, 1.0), class_share=shares.get(top, 0.0),
                cluster_share=share, audit=audit))
            for (pk, top, score, audit, _), share in zip(waiting, cluster_share, strict=True)]
    Item.objects.bulk_update(rows, ["learning_priority"], batch_size=500)
    return len(rows)


def _cluster_shares(project: Project, vectors: list) -> list[float]:
    """Per waiting item, the share of the human labels that fall in its embedding cluster."""
    labelled = list(Item.objects.filter(project=project, status=Item.Status.REVIEWED, embedding__isnull=False)
                    .values_list("embedding", flat=True))
    known = [i for i, vector in enumerate(vectors) if vector is not None]
    shares = [0.0] * len(vectors)
    if len(known) + len(labelled) < 2 * CLUSTERS or not labelled:
        return shares
    from sklearn.cluster import MiniBatchKMeans  # heavy: only refits load scikit-learn
    from threadpoolctl import threadpool_limits

    # The pooled part, which every release's embedding starts with: one layout for all rows.
    matrix = np.vstack([np.frombuffer(bytes(v), np.float32)[:POOLED_DIM] for v in [vectors[i] for i in known] + labelled])
    with threadpool_limits(limits=1):
        assigned = MiniBatchKMeans(n_clusters=CLUSTERS, random_state=0, n_init=1).fit_predict(matrix)
    counts = np.bincount(assigned[len(known):], minlength=CLUSTERS)
    for position, index in enumerate(known):
        shares[index] = float(counts[assigned[position]] / len(labelled))
    return shares


def recalibrate(project: Project, *, backend: str, model_version: str) -> ThresholdChange | None:
    """Automatic mode, a backend without refits (Rekognition, Custom Labels, SageMaker, Bedrock):
    after every ``refit_every`` new labels its thresholds are recalibrated from its reviewed items."""
    calibration = suggest_thresholds(project, backend=backend, model_version=model_version)
    if not calibration.n:
        return None
    return apply_calibration(project=project, calibration=calibration.as_dict(), backend=backend,
                             model_version=model_version,
                             summary=f"Thresholds of {backend} recalibrated on {calibration.n} reviewed items "
                                     f"(automatically).")
