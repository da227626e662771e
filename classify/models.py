"""Projects, their classes, the items uploaded to them and what the models said about each.

Models hold fields and small derived properties only; every write with rules attached goes
through ``classify.services``.
"""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from .images import PHASH_BANDS, QualityRules

UNIT_INTERVAL = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Project(models.Model):
    """A set of classes, the backend that scores images against them, and the items."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    backend = models.CharField(
        max_length=64,
        default="local",
        help_text="Which classifier scores this project's images. Takes effect for new items at once.",
    )
    backend_config = models.JSONField(
        default=dict, blank=True, help_text="Backend settings as JSON, e.g. {\"mode\": \"auto\"} for local."
    )
    refit_every = models.PositiveIntegerField(
        default=20,
        help_text="Refit the local model's trained head after this many new human labels (0 = never).",
    )
    min_examples_per_class = models.PositiveIntegerField(
        default=3, help_text="Fewer labelled examples than this for any class: the trained head is not used."
    )
    # Intake quality checks (0 turns one off). A failing upload is stored as "rejected" with the
    # reason and costs no backend call; an admin can send it on anyway.
    min_side = models.PositiveIntegerField(default=32, help_text="Reject images smaller than this on either side (px).")
    min_brightness = models.FloatField(default=0.04, validators=UNIT_INTERVAL, help_text="Reject darker images (mean luminance 0-1).")
    max_brightness = models.FloatField(default=0.98, validators=UNIT_INTERVAL, help_text="Reject brighter images (mean luminance 0-1).")
    min_sharpness = models.FloatField(default=3.0, validators=[MinValueValidator(0.0)],
                                      help_text="Reject blurrier images (variance of the Laplacian; sharp photos score in the hundreds).")
    max_aspect_ratio = models.FloatField(default=10.0, validators=[MinValueValidator(0.0)],
                                         help_text="Reject images longer than this many times their width (or height).")
    keep_originals = models.BooleanField(
        default=False, help_text="Keep each uploaded file as it came (private, never served) besides the re-encoded copy."
    )
    # Review
    class ReviewOrder(models.TextChoices):
        MARGIN = "margin", "Most uncertain first (lowest margin)"
        OLDEST = "oldest", "Oldest first"
        RANDOM = "random", "Random"
        LEARNING = "learning", "Where a label teaches most (near the thresholds, across classes)"

    review_order = models.CharField(max_length=10, choices=ReviewOrder.choices, default=ReviewOrder.MARGIN)
    multi_label = models.BooleanField(default=False, help_text="Reviewers may give an image several classes.")
    review_candidates = models.PositiveSmallIntegerField(
        default=9, validators=[MinValueValidator(1), MaxValueValidator(9)],
        help_text="How many candidate classes (with exemplars) the review screen shows (1-9).",
    )
    grid_size = models.PositiveSmallIntegerField(default=24, validators=[MinValueValidator(1), MaxValueValidator(60)])
    lease_seconds = models.PositiveIntegerField(
        default=120, validators=[MinValueValidator(10)],
        help_text="How long a reviewer holds an item without renewing (the page renews while open).",
    )
    consensus_reviews = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Independent reviews needed for items below the consensus score; disagreements go to a project admin.",
    )
    consensus_below = models.FloatField(
        default=0.5, validators=UNIT_INTERVAL, help_text="Items whose top score is below this need the consensus reviews.",
    )
    # Learning: who promotes a better refit, and the precision auto-accept promises.
    class LearningMode(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic: promote a refit that beats the active model, apply its thresholds"
        APPROVAL = "approval", "Approval: a project admin approves each candidate and applies thresholds"

    learning_mode = models.CharField(
        max_length=10, choices=LearningMode.choices, default=LearningMode.APPROVAL,
        help_text="New local-backend projects start automatic; see docs/retraining.md.",
    )
    # Retraining: the bar a new model must clear, and what "compare before switching" samples.
    class OverBudget(models.TextChoices):
        WAIT = "wait", "Wait: items stay queued until the budget allows the call"
        LOCAL = "local", "Fall back to the local model"

    cascade = models.BooleanField(
        default=False, help_text="Cheap path first: a settled near-duplicate gives its label, and the local model "
                                 "answers when it would auto-accept; only the rest go to the paid backend.")
    over_budget = models.CharField(
        max_length=8, choices=OverBudget.choices, default=OverBudget.WAIT,
        help_text="What happens to a paid backend call that would cross one of the cloud budgets.")
    min_f1 = models.FloatField(
        default=0.8, validators=UNIT_INTERVAL,
        help_text="A retrained model is offered for promotion only with at least this F1 (and at least the active model's).",
    )
    compare_sample = models.PositiveIntegerField(
        default=200, validators=[MinValueValidator(1)],
        help_text="How many recent items a candidate model re-classifies before a project admin decides.",
    )
    max_share_shift = models.FloatField(
        default=10.0, validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Warn when a candidate moves any class's share of the sample by more than this many points.",
    )
    target_precision = models.FloatField(
        default=0.95, validators=[MinValueValidator(0.5), MaxValueValidator(0.999)],
        help_text="Calibrated thresholds auto-accept only where precision is at least this, at 95% confidence.",
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def quality_rules(self) -> QualityRules:
        return QualityRules(
            min_side=self.min_side, min_brightness=self.min_brightness, max_brightness=self.max_brightness,
            min_sharpness=self.min_sharpness, max_aspect_ratio=self.max_aspect_ratio,
        )


class Membership(models.Model):
    """Who may see a project, and whether they may also administer it."""

    class Role(models.TextChoices):
        REVIEWER = "reviewer", "Reviewer"
        ADMIN = "admin", "Project admin"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.REVIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Label(models.Model):
    """One class of a project with the thresholds that decide auto-accept.

    Every project has exactly one ``is_unknown`` label: the rejection class that takes the score
    no other class claims. It never auto-accepts.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, help_text="Shown to reviewers and to LLM backends.")
    order = models.PositiveIntegerField(default=0)
    accept_threshold = models.FloatField(
        default=0.8, validators=UNIT_INTERVAL, help_text="Auto-accept when this class scores at least this."
    )
    margin = models.FloatField(
        default=0.0, validators=UNIT_INTERVAL, help_text="…and leads the runner-up by at least this."
    )
    is_unknown = models.BooleanField(default=False, editable=False)
    audit_rate = models.FloatField(
        default=0.02, validators=UNIT_INTERVAL,
        help_text="Share of this class's auto-accepted items also sent to review, unannounced, to measure how often auto-accept is wrong.",
    )
    mappings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per backend, the backend's own class names this class stands for, "
        'e.g. {"local": ["tabby, tabby cat", "tiger cat"]}.',
    )
    calibration = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="How the threshold was last calibrated: model, evidence, precision bound, when.",
    )
    paused_reason = models.CharField(
        max_length=500, blank=True,
        help_text="Set when audits show auto-accept below the target precision: this class goes to review "
        "until a refit recovers it. Clear it to resume.",
    )
    paused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_label_name_per_project"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_unknown=True), name="one_unknown_label_per_project"
            ),
            models.CheckConstraint(
                condition=Q(accept_threshold__gte=0) & Q(accept_threshold__lte=1), name="threshold_in_unit_interval"
            ),
            models.CheckConstraint(condition=Q(margin__gte=0) & Q(margin__lte=1), name="margin_in_unit_interval"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def hold(self) -> str:
        """Why this class does not auto-accept whatever it scores ("" when it may): paused by
        audits, or calibrated without enough evidence for the target precision."""
        if self.paused_reason:
            return f"Auto-accept of {self.name} is paused: {self.paused_reason}"
        if self.calibration and self.calibration.get("threshold") is None:
            reason = self.calibration.get("reason", "")
            return f"{self.name} cannot auto-accept yet at {self.calibration.get('target', 0):.0%} precision. {reason}".strip()
        return ""


def _generated_key(folder: str, original: str) -> str:
    """A storage key that never contains anything the client chose."""
    suffix = PurePosixPath(original).suffix.lower()
    extension = suffix if suffix in {".jpg", ".png"} else ".jpg"
    return f"{folder}/{uuid.uuid4().hex}{extension}"


def item_image_key(instance: Item, filename: str) -> str:
    return _generated_key(f"items/{instance.project_id}", filename)


def original_key(instance: Item, filename: str) -> str:
    return f"originals/{instance.project_id}/{uuid.uuid4().hex}{PurePosixPath(filename).suffix.lower()[:6]}"


def exemplar_image_key(instance: Exemplar, filename: str) -> str:
    return _generated_key(f"exemplars/{instance.label.project_id}", filename)


class Exemplar(models.Model):
    """A reference image of a class: shown to reviewers and used to train the local head."""

    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="exemplars")
    image = models.FileField(upload_to=exemplar_image_key)
    sha256 = models.CharField(max_length=64, editable=False)
    embedding = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label", "-created_at"]

    def __str__(self) -> str:
        return f"exemplar of {self.label}"


def phash_band(index: int) -> models.GeneratedField:
    """Band ``index`` of ``Item.phash`` (``images.phash_bands`` in SQL; NULL without a hash)."""
    shift, width = PHASH_BANDS[index]
    return models.GeneratedField(expression=F("phash").bitrightshift(shift).bitand((1 << width) - 1),
                                 output_field=models.SmallIntegerField(), db_persist=True)


class Item(models.Model):
    """One uploaded image and where it stands. The database, not the broker, is the truth."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        CLASSIFYING = "classifying", "Classifying"
        AUTO_ACCEPTED = "auto_accepted", "Auto-accepted"
        NEEDS_REVIEW = "needs_review", "Needs review"
        REVIEWED = "reviewed", "Reviewed"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    image = models.FileField(upload_to=item_image_key, max_length=200)
    original = models.FileField(upload_to=original_key, max_length=200, blank=True,
                                help_text="The file as uploaded (only with keep_originals); never served.")
    original_filename = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=10, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    phash = models.BigIntegerField(null=True, blank=True, db_index=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The first item of the project with the same picture.",
    )
    near_duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The latest earlier item whose picture looks almost the same (perceptual hash).",
    )
    # The dHash cut into bands (images.PHASH_BANDS), computed by the database from ``phash`` and
    # indexed: the near-duplicate lookup asks for the items sharing a band (services.intake).
    phash_band0 = phash_band(0)
    phash_band1 = phash_band(1)
    phash_band2 = phash_band(2)
    phash_band3 = phash_band(3)
    phash_band4 = phash_band(4)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    status_reason = models.CharField(max_length=500, blank=True)
    error_detail = models.CharField(
        max_length=2000, blank=True,
        help_text="The full error behind a short status reason (e.g. AWS's message): for project admins and logs only.",
    )
    attempts = models.PositiveIntegerField(default=0)
    claim = models.UUIDField(null=True, blank=True, editable=False)
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labelled_at = models.DateTimeField(null=True, blank=True)
    embedding = models.BinaryField(null=True, editable=False)
    # The latest prediction's summary, on the row so the review queue can sort without a join.
    top_label = models.CharField(max_length=100, blank=True)
    top_score = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    # Review: who holds the item now (a lease, renewed while their page is open) and what it needs.
    lease_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_token = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    reviews_needed = models.PositiveSmallIntegerField(default=1)
    # The backend an item started with: retries finish with it even if the project switches.
    backend = models.CharField(max_length=64, blank=True)
    backend_config = models.JSONField(null=True, blank=True, editable=False)
    learning_priority = models.FloatField(
        null=True, blank=True,
        help_text="Review order 'learning': lower first (near its class's threshold, from a class or cluster with "
        "few labels).",
    )
    audit = models.BooleanField(default=False, help_text="Auto-accepted, and sampled for a human check.")
    escalated = models.BooleanField(default=False, help_text="Reviewers disagreed: a project admin decides.")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=255, blank=True, editable=False,
        help_text="<worker name>/<task id> of the claim: lets a dead worker's claim be released early.",
    )
    idempotency_key = models.CharField(
        max_length=255, blank=True, editable=False,
        help_text="The uploader's Idempotency-Key: a retried upload with it returns this item.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "uploaded_by", "idempotency_key"], condition=~models.Q(idempotency_key=""),
                name="item_idempotency_key_unique",
            ),
        ]
        indexes = [
            # Keyset pagination of a project's item list, newest first, with or without a status.
            models.Index(fields=["project", "status", "id"], name="item_project_status_id"),
            models.Index(fields=["project", "id"], name="item_project_id"),
            # The admin's filename search ("starts with") at any table size.
            models.Index(fields=["original_filename"], opclasses=["varchar_pattern_ops"], name="item_filename_prefix"),
            # A class's latest human-labelled items (exemplars when a class has too few of its own).
            models.Index(fields=["label", "labelled_at"], condition=Q(status="reviewed"), name="item_reviewed_by_label"),
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["project", "sha256"]),
            models.Index(fields=["project", "status", "margin"]),
            models.Index(fields=["project", "status", "created_at"]),
            models.Index(fields=["project", "status", "top_label", "top_score"]),
            # The dashboard's rollup refresh reads the recent hours by these times.
            models.Index(fields=["created_at"], name="item_created"),
            models.Index(fields=["labelled_at"], name="item_labelled"),
            models.Index(fields=["project", "status", "learning_priority"], name="item_learning_order"),
            models.Index(fields=["claimed_at"], name="item_claimed_at"),  # health: the last claim
            *(models.Index(fields=["project", f"phash_band{index}"], name=f"item_phash_band{index}")
              for index in range(len(PHASH_BANDS))),
        ]

    def __str__(self) -> str:
        return f"item #{self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.status not in TRANSIENT_STATUSES


TRANSIENT_STATUSES = frozenset({Item.Status.RECEIVED, Item.Status.QUEUED, Item.Status.CLASSIFYING})

# The state machine: which status may follow which. services.transition() enforces it.
S = Item.Status
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.QUEUED, S.CLASSIFYING, S.REJECTED, S.FAILED}),
    S.QUEUED: frozenset({S.CLASSIFYING, S.FAILED}),
    S.CLASSIFYING: frozenset({S.AUTO_ACCEPTED, S.NEEDS_REVIEW, S.QUEUED, S.FAILED}),
    S.AUTO_ACCEPTED: frozenset({S.REVIEWED, S.QUEUED}),
    S.NEEDS_REVIEW: frozenset({S.REVIEWED, S.QUEUED}),
    # A human label is never thrown away by a re-run; an undo sends the item back to review.
    S.REVIEWED: frozenset({S.REVIEWED, S.NEEDS_REVIEW}),
    S.REJECTED: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
}
del S


class Prediction(models.Model):
    """What one backend said about one item, and the routing decision taken on it.

    ``thresholds`` is the rule set in force when the item was routed, so "why was this
    auto-accepted?" has an answer after admins change the thresholds.
    """

    class Decision(models.TextChoices):
        AUTO_ACCEPTED = "auto_accepted", "Auto-accepted"
        NEEDS_REVIEW = "needs_review", "Needs review"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="predictions")
    backend = models.CharField(max_length=64)
    model_version = models.CharField(max_length=200)
    scores = models.JSONField(help_text="Every class of the project, unknown included; sums to 1.")
    top_label = models.CharField(max_length=100)
    top_score = models.FloatField()
    margin = models.FloatField()
    latency_ms = models.FloatField()
    thresholds = models.JSONField()
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.CharField(max_length=500)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0,
                                   help_text="What the backend call cost (0 when scores were reused).")
    saved_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0,
                                    help_text="What reusing an identical image's scores saved.")
    reused_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Set when the scores were copied from an identical image instead of calling the backend.",
    )
    raw = models.JSONField(null=True, blank=True)
    provenance = models.CharField(
        max_length=300, blank=True,
        help_text='Where the model and thresholds came from, e.g. "head-7, promoted automatically: coverage 61% → 74% at 95%".',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["backend", "model_version"]),
                   models.Index(fields=["created_at"], name="prediction_created")]  # rollup refresh

    def __str__(self) -> str:
        return f"{self.top_label} {self.top_score:.2f} ({self.backend})"

    @property
    def sorted_scores(self) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda pair: pair[1], reverse=True)


class ModelVersion(models.Model):
    """A fitted model a backend can use (for ``local``: a trained head on the embeddings)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    backend = models.CharField(max_length=64, default="local")
    version = models.CharField(max_length=100)
    artifact = models.BinaryField(editable=False, default=bytes)
    classes = models.JSONField(default=list)
    n_train = models.PositiveIntegerField(default=0)
    n_test = models.PositiveIntegerField(default=0)
    held_out_accuracy = models.FloatField(null=True, blank=True)
    human_labels_seen = models.PositiveIntegerField(default=0)
    f1 = models.FloatField(null=True, blank=True, help_text="Macro F1 (local) or Custom Labels' F1 on the test split.")
    metrics = models.JSONField(default=dict, blank=True,
                               help_text="Test-split evaluation: accuracy, per class precision/recall/F1, thresholds.")
    config = models.JSONField(default=dict, blank=True,
                              help_text="Backend settings this version needs, e.g. its project_version_arn.")
    is_active = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True)
    coverage = models.FloatField(
        null=True, blank=True,
        help_text="Share of the human labels it would auto-accept at the target precision (out of fold).",
    )
    provenance = models.CharField(max_length=300, blank=True, help_text="How it became active; copied to each prediction.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "backend", "version"], name="unique_model_version"),
            models.UniqueConstraint(
                fields=["project", "backend"], condition=Q(is_active=True), name="one_active_model_per_backend"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} {self.backend} {self.version}"


class BacklogCount(models.Model):
    """How many of a project's items wait for review, per class the model put them in and
    escalation: what the review screens show (remaining, waiting per class) without counting a
    million rows per request.

    Kept by the database itself: triggers on ``classify_item`` (migration 0015) add and subtract
    as items enter and leave ``needs_review`` or change class or escalation, in the same
    transaction as the change, whoever makes it (a service, the admin, a bulk update, a delete).
    Nothing in Python writes these rows.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    top_label = models.CharField(max_length=100, blank=True)
    escalated = models.BooleanField(default=False)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "top_label", "escalated"], name="one_backlog_count")]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.top_label or '-'}{' (escalated)' if self.escalated else ''}: {self.n}"


class StatusCount(models.Model):
    """How many of a project's items are in each status (and, within it, carry each label):
    what the project list, the item list's tabs, the classes' "N labelled" and the dashboard's
    backlog snapshot show, without counting a million rows per page.

    Kept by the database itself, like ``BacklogCount``: triggers on ``classify_item`` (migration
    0019) record every insert, delete and change of status, project or label in the same transaction,
    whoever makes it. On PostgreSQL each statement appends its net change as rows of this table
    (a ledger: appending takes no lock another transaction waits for, so concurrent uploads,
    workers and the sweeper never queue or deadlock on a counter row); the sweeper folds them
    into one row per key (``services.counts.compact_status_counts``). On SQLite, which has
    one writer at a time, the triggers keep one row per key. Either way a count is the **sum**
    of its rows (``selectors.status_counts``), exact at every commit. Nothing in
    Python writes these rows but the compaction.
    """

    # No database constraint: deleting a project deletes and updates its items first, whose
    # triggers still write its counts; a trigger on the project table removes them with its row.
    project = models.ForeignKey(Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    status = models.CharField(max_length=16)
    # The items' label (their human or accepted class): how many reviewed items each class has.
    # No database constraint: a deleted class's rows sum to zero once its items let go of it.
    label = models.ForeignKey(Label, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.project_id}/{self.status}/{self.label_id or '-'}: {self.n:+}"


class ApiToken(models.Model):
    """An API key. Only its SHA-256 is stored; the key itself is shown once.

    A token acts as its user, narrowed: to one project when ``project`` is set (every other
    project is invisible to it), to reading when ``read_only`` (GET and HEAD only), and until
    ``expires_at`` when set. Revoking a token deletes it.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, to recognise it later.")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                help_text="Only this project (empty: every project of the user).")
    read_only = models.BooleanField(default=False, help_text="Reads only: no uploads, no review decisions.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused after this moment (empty: never).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def is_expired(self, now) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class BakeoffRun(models.Model):
    """One bake-off: several backends scored on the project's human-labelled items."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting for a budget"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="bakeoffs")
    backends = models.JSONField(help_text="Backend names, in the order to show them.")
    configs = models.JSONField(default=dict, blank=True, help_text="Per backend name, the settings to use.")
    sample = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    results = models.JSONField(default=list, blank=True)
    waiting_reason = models.CharField(max_length=500, blank=True,
                                      help_text="While waiting: which budget is used up and when the run resumes.")
    resume_at = models.DateTimeField(null=True, blank=True, help_text="While waiting: when the sweeper queues it again.")
    progress = models.JSONField(default=dict, blank=True,
                                help_text="Kept while waiting: the items chosen, and per backend the outcomes so far.")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When it was last handed to the broker.")
    claimed_by = models.CharField(max_length=255, blank=True, help_text="While running: <worker>/<task id>.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bake-off #{self.pk} of {self.project}"


class TrainingRun(models.Model):
    """One retraining: the steps taken so far, the candidate model, its comparison, the decision.

    The Celery tasks run one step at a time and keep everything they learn here (AWS ARNs, when
    to poll next), so a run survives worker restarts: the sweeper re-enqueues a run whose next
    step is overdue. ``steps`` is the log shown to project admins, one entry per step attempt.
    """

    class Kind(models.TextChoices):
        LOCAL = "local", "Local trained head"
        CUSTOM_LABELS = "custom_labels", "Rekognition Custom Labels"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        AWAITING_DECISION = "awaiting_decision", "Waiting for a project admin"
        APPROVED = "approved", "Approved and activated"
        REJECTED = "rejected", "Rejected by a project admin"
        NOT_PROMOTED = "not_promoted", "Not promoted (below the bar)"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    step = models.CharField(max_length=40, blank=True, help_text="The step to run next (or the last one run).")
    steps = models.JSONField(default=list, blank=True, help_text="[{step, status, detail, at}], oldest first.")
    reason = models.CharField(max_length=1000, blank=True, help_text="Why the run failed or was not promoted.")
    # Inputs (custom_labels): the exported manifests and where Rekognition writes its output.
    train_manifest = models.CharField(max_length=1100, blank=True)
    test_manifest = models.CharField(max_length=1100, blank=True)
    output_location = models.CharField(max_length=1100, blank=True, help_text="s3://bucket/prefix for training output.")
    region = models.CharField(max_length=32, blank=True)
    rekognition_project = models.CharField(max_length=255, blank=True)
    version_name = models.CharField(max_length=255, blank=True)
    start_model = models.BooleanField(default=True, help_text="Start the new model version (billed while running).")
    # What AWS told us: ARNs, and when to look again.
    aws = models.JSONField(default=dict, blank=True)
    polls = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    token = models.UUIDField(null=True, blank=True, editable=False, help_text="Only the task carrying it may run the next step.")
    # Results
    candidate = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metrics = models.JSONField(default=dict, blank=True)
    comparison = models.JSONField(default=dict, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_poll_at"])]
        constraints = [
            # Refits never run twice at once: concurrent decisions race to start one, the database
            # lets exactly one in (the others find it and stand down).
            models.UniqueConstraint(fields=["project"], condition=Q(kind="local", state__in=["queued", "running"]),
                                    name="one_open_local_run_per_project"),
        ]

    def __str__(self) -> str:
        return f"training run #{self.pk} of {self.project} ({self.kind})"

    @property
    def is_open(self) -> bool:
        return self.state in (self.State.QUEUED, self.State.RUNNING)


class Event(models.Model):
    """The outbox: something outside systems are told about, written in the transaction that
    made it happen, so a settlement and its event exist together or not at all.

    The ``id`` is what receivers deduplicate on (delivery is at least once). Consumers (webhooks,
    results to S3) are handed each event after commit and again by the sweeper until
    ``dispatched_at`` is set.
    """

    class Type(models.TextChoices):
        ITEM_SETTLED = "item.settled", "An item was settled (auto-accepted, reviewed, rejected or failed)"
        RUN_AWAITING_DECISION = "training_run.awaiting_decision", "A training run needs a decision"
        RUN_PROMOTED = "training_run.promoted", "A training run's model was promoted"
        PING = "ping", "Test event"
        BUDGET_ALERT = "budget.alert", "A cloud budget reached 80% or 100%"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40, choices=Type.choices)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["created_at"], condition=Q(dispatched_at__isnull=True),
                                name="event_undispatched")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class CloudResource(models.Model):
    """An AWS resource Loupe created for a project (a Rekognition Custom Labels project). Loupe
    reuses, changes or deletes only what is recorded here for the same project: a name typed by an
    admin, or a resource of another project or made outside Loupe, is never touched."""

    class Kind(models.TextChoices):
        REKOGNITION_PROJECT = "rekognition_project", "Rekognition Custom Labels project"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cloud_resources")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    region = models.CharField(max_length=32, blank=True)
    name = models.CharField(max_length=255)
    arn = models.CharField(max_length=2048)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "region", "name"], name="one_record_per_cloud_resource")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name} ({self.project})"


class ThresholdChange(models.Model):
    """An audit record: thresholds applied from a calibration (by a person or automatically), or a
    class paused or resumed because of audited precision."""

    class Kind(models.TextChoices):
        CALIBRATION = "calibration", "Calibrated thresholds applied"
        PAUSE = "pause", "Auto-accept paused"
        RESUME = "resume", "Auto-accept resumed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="threshold_changes")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    backend = models.CharField(max_length=64, blank=True)
    model_version = models.CharField(max_length=200, blank=True)
    summary = models.CharField(max_length=500)
    before = models.JSONField(default=dict, blank=True, help_text="Per class: threshold, margin, paused.")
    after = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(default=dict, blank=True, help_text="The evidence: per class counts and bounds.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", help_text="Empty: applied automatically.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} in {self.project}"


class WorkerHeartbeat(models.Model):
    """A Celery worker's sign of life, written by its main process every few seconds
    (classify/heartbeat.py). Health and the sweeper read it: a worker not seen for a minute is
    gone, and the items it had claimed can be handed to another one at once."""

    name = models.CharField(max_length=255, unique=True, help_text="Celery node name, e.g. celery@host.")
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    active_tasks = models.JSONField(
        null=True, blank=True,
        help_text="Ids of the tasks its pool processes were running at seen_at; empty: not reported.")

    def __str__(self) -> str:
        return self.name


class HostedModel(models.Model):
    """A Rekognition Custom Labels model version Loupe started, so Loupe may stop and restart it.

    Custom Labels bills per inference-unit hour while a model runs, busy or not. Loupe stops a
    tracked model once it has been idle for ``LOUPE_MODEL_IDLE_MINUTES`` and starts it again when
    work arrives. ``billed_seconds`` adds up the time between each start and stop Loupe made
    (Loupe's estimate of the inference hours billed, per inference unit).
    """

    class State(models.TextChoices):
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed to start"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hosted_models")
    project_version_arn = models.CharField(max_length=600)
    region = models.CharField(max_length=40, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.STARTING)
    status_message = models.CharField(max_length=500, blank=True)
    min_inference_units = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When Loupe last called StartProjectVersion.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, help_text="When a starting model is described next.")
    checks = models.PositiveIntegerField(default=0)
    billed_seconds = models.FloatField(default=0.0, help_text="Inference time of earlier start-stop spans.")
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "project_version_arn"], name="unique_hosted_model")]

    def __str__(self) -> str:
        return f"{self.project} {self.project_version_arn} ({self.state})"

    @property
    def version_name(self) -> str:
        parts = self.project_version_arn.split("/")
        return parts[3] if len(parts) > 3 else self.project_version_arn

    def inference_hours(self, now) -> float:
        """Hours billed so far: the closed spans plus the open one (a model starting or running)."""
        seconds = self.billed_seconds
        if self.state in (self.State.STARTING, self.State.RUNNING) and self.started_at:
            seconds += max(0.0, (now - self.started_at).total_seconds())
        return seconds * self.min_inference_units / 3600.0


class Budget(models.Model):
    """A spending limit on one backend, per day or per calendar month (UTC), for one project or,
    without a project, for the whole installation. A call that would cross it waits or falls back
    to the local model (``Project.over_budget``); reaching 80% and 100% raises an alert."""

    class Period(models.TextChoices):
        DAY = "day", "per day"
        MONTH = "month", "per month"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="budgets",
                                help_text="Empty: the budget covers every project of the installation.")
    backend = models.CharField(max_length=64)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.DAY)
    limit_usd = models.DecimalField(max_digits=12, decimal_places=4)
    alerted = models.JSONField(default=dict, blank=True, help_text="Per period (its start), the alert level reached.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["backend", "period", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "backend", "period"], name="unique_project_budget"),
            models.UniqueConstraint(fields=["backend", "period"], condition=Q(project__isnull=True),
                                    name="unique_installation_budget"),
            models.CheckConstraint(condition=Q(limit_usd__gte=0), name="budget_limit_not_negative"),
        ]

    def __str__(self) -> str:
        scope = self.project.slug if self.project_id else "installation"
        return f"{scope}: {self.backend} ${self.limit_usd} {self.get_period_display()}"


class Spend(models.Model):
    """A paid call whose cost is on no prediction: a bake-off's call, a candidate model scoring
    the comparison sample, a call billed although it failed (Bedrock's two bad replies). Budgets
    add these to the predictions' ``cost_usd``, so every paid call counts."""

    class Kind(models.TextChoices):
        BAKEOFF = "bakeoff", "Bake-off"
        COMPARISON = "comparison", "Candidate model comparison"
        FAILED_CALL = "failed_call", "Billed call that gave no scores"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="spends")
    backend = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["backend", "created_at"], name="spend_backend_created")]

    def __str__(self) -> str:
        return f"{self.project}: {self.backend} ${self.cost_usd} ({self.get_kind_display()})"


class SpendDay(models.Model):
    """What one project spent on one backend in one UTC day: every paid call, on a prediction or
    not (``Spend``), added as it is recorded. A budget sums at most 31 of these before a call,
    instead of every call of its period."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="spend_days")
    backend = models.CharField(max_length=64)
    day = models.DateField()
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "backend", "day"], name="unique_spend_day")]
        indexes = [models.Index(fields=["backend", "day"], name="spend_day_backend")]

    def __str__(self) -> str:
        return f"{self.project}: {self.backend} {self.day} ${self.cost_usd}"
