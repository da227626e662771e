"""Seeding shared by bench/review_http.py and bench/scale.py: big review projects on PostgreSQL,
made with set-based SQL (``INSERT ... SELECT FROM generate_series``) so a million items take
about a minute, not an hour of ORM ``bulk_create``.

The database is kept between runs (``loupe_bench_scale`` by default): a project that already
holds the wanted number of items is reused as it is, and ``reset_project`` puts back whatever a
previous run decided, so every run starts from the same queue. Nothing reads the image files
(the item key is a dummy), so no media is written.

Each item gets one ``Prediction``: its scores come from a pool of ``POOL`` Dirichlet draws over
the project's classes (item ``i`` takes draw ``i % POOL``, stored in ``width`` so the prediction
rows can be joined back), which gives varied ``top_label``/``top_score``/``margin`` values the
queue orders by, without a Python loop over a million rows.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench_scale"
LABELS = ("cat", "cup", "missile", "space shuttle")
POOL = 1000
REVIEWERS = 16
# Unset so the app cannot reach the developer's media, bucket or broker, and so timings are
# representative (DEBUG=true keeps every query in memory).
ISOLATED_ENV = ("MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME", "DEBUG")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names when it does not exist (kept between runs)."""
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def setup_django(var_dir: Path, *, isolated_env: tuple[str, ...] = ISOLATED_ENV) -> None:
    """Start Django on DATABASE_URL (default: the bench database), which must be PostgreSQL; migrate.
    ``isolated_env`` names the variables unset first (a benchmark without a worker adds the broker)."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    for name in isolated_env:
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOUPE_VAR_DIR"] = str(var_dir)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark measures PostgreSQL (as shipped in docker-compose.yml); "
                         f"DATABASE_URL selects {connection.vendor}. e.g. {DEFAULT_DATABASE_URL}")
    call_command("migrate", verbosity=0)


def score_pool(names: list[str], seed: int = 0) -> list[dict]:
    """POOL score distributions over ``names`` (Dirichlet(0.5)): sometimes sure, often torn."""
    rng = random.Random(seed)
    pool = []
    for _ in range(POOL):
        draws = [rng.gammavariate(0.5, 1.0) for _ in names]
        scores = {name: round(draw / sum(draws), 6) for name, draw in zip(names, draws, strict=True)}
        ranked = sorted(scores.values(), reverse=True)
        pool.append({"scores": scores, "top_label": max(scores, key=scores.get), "top_score": ranked[0],
                     "margin": ranked[0] - ranked[1]})
    return pool


def project(slug: str, *, reviewers: int = REVIEWERS):
    """The bench project ``slug`` (local backend, defaults as shipped) with ``reviewers`` plain
    members ``<slug>-r<N>`` and a project admin ``<slug>-admin``; created if missing."""
    from django.contrib.auth import get_user_model

    from classify.models import Membership, Project
    from classify.services import projects

    found = Project.objects.filter(slug=slug).first()
    if found is None:
        found = projects.create_project(slug=slug, labels=list(LABELS), backend="local")
    users = get_user_model()
    for number in range(reviewers):
        user, _ = users.objects.get_or_create(username=f"{slug}-r{number}")
        Membership.objects.get_or_create(project=found, user=user, defaults={"role": Membership.Role.REVIEWER})
    admin, _ = users.objects.get_or_create(username=f"{slug}-admin", defaults={"is_staff": True})
    Membership.objects.get_or_create(project=found, user=admin, defaults={"role": Membership.Role.ADMIN})
    return found


def reviewers_of(project_row, count: int) -> list:
    from django.contrib.auth import get_user_model

    names = [f"{project_row.slug}-r{number}" for number in range(count)]
    by_name = {user.username: user for user in get_user_model().objects.filter(username__in=names)}
    return [by_name[name] for name in names]


def admin_of(project_row):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=f"{project_row.slug}-admin")


def ensure_items(project_row, *, pending: int, reviewed: int = 0, accepted: int = 0, log=print) -> bool:
    """Make the project hold exactly this many items per status (seeding it if it holds none).

    Returns True when it seeded. A project holding other counts is refused (a previous run with
    other sizes: drop it or use another slug)."""
    from classify.models import Item

    counts = _status_counts(project_row)
    wanted = {Item.Status.NEEDS_REVIEW: pending, Item.Status.REVIEWED: reviewed, Item.Status.AUTO_ACCEPTED: accepted}
    wanted = {status: n for status, n in wanted.items() if n}
    if counts == wanted:
        return False
    if counts:
        raise SystemExit(f"project {project_row.slug!r} holds {counts}, not {wanted}: drop the bench database "
                         "(dropdb loupe_bench_scale) or pass other sizes")
    started = time.perf_counter()
    _insert(project_row, pending=pending, reviewed=reviewed, accepted=accepted)
    log(f"  seeded {project_row.slug}: {sum(wanted.values()):,} items in {time.perf_counter() - started:.0f} s")
    return True


def _status_counts(project_row) -> dict:
    from django.db.models import Count

    from classify.models import Item

    rows = Item.objects.filter(project=project_row).order_by().values("status").annotate(n=Count("pk"))
    return {row["status"]: row["n"] for row in rows}


def _insert(project_row, *, pending: int, reviewed: int, accepted: int) -> None:
    """Items, predictions and (for reviewed items) decisions, in a few set-based statements."""
    from django.db import connection, transaction

    labels = {label.name: label.pk for label in project_row.labels.all()}
    pool = score_pool(list(labels))
    decider = admin_of(project_row)
    with transaction.atomic(), connection.cursor() as cursor:
        # The item table's row triggers (BacklogCount) would update one counter row a million
        # times in this one transaction, each update slower than the last (every earlier version
        # of the row stays until commit): off for the seed, the counts made once at the end.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("CREATE TEMP TABLE bench_pool (k int PRIMARY KEY, scores jsonb, top_label text, "
                       "top_score float8, margin float8) ON COMMIT DROP")
        cursor.executemany("INSERT INTO bench_pool VALUES (%s, %s, %s, %s, %s)",
                           [(k, json.dumps(p["scores"]), p["top_label"], p["top_score"], p["margin"])
                            for k, p in enumerate(pool)])
        start = 0
        for status, count in (("needs_review", pending), ("reviewed", reviewed), ("auto_accepted", accepted)):
            if count:
                _insert_items(cursor, project_row.pk, status, start, count, decider.pk)
                start += count
        _insert_predictions(cursor, project_row.pk)
        if reviewed:
            _insert_decisions(cursor, project_row.pk, decider.pk, labels)
        _count(cursor, project_row.pk)
    with connection.cursor() as cursor:
        for table in ("classify_item", "classify_prediction", "reviewer_decision", "reviewer_decision_labels"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def _count(cursor, project_id: int) -> None:
    """What the item table's triggers keep (migrations classify/0015 and 0019), counted once."""
    cursor.execute("DELETE FROM classify_backlogcount WHERE project_id = %s", [project_id])
    cursor.execute("INSERT INTO classify_backlogcount (project_id, top_label, escalated, n) "
                   "SELECT project_id, top_label, escalated, COUNT(*) FROM classify_item "
                   "WHERE project_id = %s AND status = 'needs_review' GROUP BY project_id, top_label, escalated",
                   [project_id])
    cursor.execute("DELETE FROM classify_statuscount WHERE project_id = %s", [project_id])
    cursor.execute("INSERT INTO classify_statuscount (project_id, status, label_id, n) "
                   "SELECT project_id, status, label_id, COUNT(*) FROM classify_item WHERE project_id = %s "
                   "GROUP BY project_id, status, label_id", [project_id])


def _insert_items(cursor, project_id: int, status: str, start: int, count: int, decider_id: int) -> None:
    labelled = status != "needs_review"
    cursor.execute(
        f"""
        INSERT INTO classify_item (image, original, original_filename, source_format, sha256, width, height,
            status, status_reason, attempts, created_at, updated_at, project_id, audit, escalated, reviews_needed,
            top_label, top_score, margin, backend, label_id, labelled_by_id, labelled_at, error_detail, claimed_by,
            idempotency_key)
        SELECT 'items/' || %(project)s || '/bench.jpg', '', 'photo-' || g || '.jpg', 'JPEG',
            md5(%(project)s || ':' || g) || md5(g || ':' || %(project)s), 600 + g %% {POOL}, 480,
            %(status)s, 'seeded by bench/_seed.py', 1,
            now() - make_interval(secs => (%(end)s - g) * 0.5), now(), %(project)s, false, false, 1,
            p.top_label, p.top_score, p.margin, 'local',
            CASE WHEN %(labelled)s THEN l.id END, CASE WHEN %(status)s = 'reviewed' THEN %(decider)s END,
            CASE WHEN %(labelled)s THEN now() - make_interval(secs => (%(end)s - g) * 0.5) END, '', '', ''
        FROM generate_series(%(start)s, %(end)s - 1) AS g
        JOIN bench_pool p ON p.k = g %% {POOL}
        JOIN classify_label l ON l.project_id = %(project)s AND l.name = p.top_label
        ORDER BY g
        """,
        {"project": project_id, "status": status, "start": start, "end": start + count, "labelled": labelled,
         "decider": decider_id},
    )


def _insert_predictions(cursor, project_id: int) -> None:
    cursor.execute(
        """
        INSERT INTO classify_prediction (item_id, backend, model_version, scores, top_label, top_score, margin,
            latency_ms, thresholds, decision, reason, created_at, cost_usd, saved_usd, provenance)
        SELECT i.id, 'local', 'efficientnet-lite0-imagenet/zero-shot:bench', p.scores, p.top_label, p.top_score,
            p.margin, 40.0, '{}'::jsonb,
            CASE WHEN i.status = 'auto_accepted' THEN 'auto_accepted' ELSE 'needs_review' END,
            'seeded by bench/_seed.py', i.created_at, 0, 0, ''
        FROM classify_item i JOIN bench_pool p ON p.k = i.width - 600
        WHERE i.project_id = %s ORDER BY i.id
        """,
        [project_id],
    )


def _insert_decisions(cursor, project_id: int, decider_id: int, labels: dict[str, int]) -> None:
    cursor.execute(
        """
        INSERT INTO reviewer_decision (created_at, item_id, label_id, prediction_id, reviewer_id, audit, kind,
            lease_token, scores_shown, seconds_spent, undone)
        SELECT i.labelled_at, i.id, i.label_id, pr.id, %s, false, 'label', gen_random_uuid(), pr.scores, 2.5, false
        FROM classify_item i JOIN classify_prediction pr ON pr.item_id = i.id
        WHERE i.project_id = %s AND i.status = 'reviewed' ORDER BY i.id
        """,
        [decider_id, project_id],
    )
    cursor.execute(
        """
        INSERT INTO reviewer_decision_labels (decision_id, label_id)
        SELECT d.id, d.label_id FROM reviewer_decision d JOIN classify_item i ON i.id = d.item_id
        WHERE i.project_id = %s AND d.reviewer_id = %s
        """,
        [project_id, decider_id],
    )


def reset_project(project_row) -> int:
    """Undo what earlier benchmark runs did to the project: items its reviewers decided go back
    to the queue, their decisions, leases and any training runs they triggered are deleted.
    Returns how many items went back."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TEMP TABLE bench_touched ON COMMIT DROP AS
            SELECT DISTINCT d.item_id FROM reviewer_decision d JOIN auth_user u ON u.id = d.reviewer_id
            JOIN classify_item i ON i.id = d.item_id
            WHERE i.project_id = %s AND u.username LIKE %s
            """,
            [project_row.pk, f"{project_row.slug}-r%"],
        )
        cursor.execute("DELETE FROM reviewer_decision_labels WHERE decision_id IN (SELECT d.id FROM "
                       "reviewer_decision d JOIN bench_touched t ON t.item_id = d.item_id "
                       "JOIN auth_user u ON u.id = d.reviewer_id WHERE u.username LIKE %s)",
                       [f"{project_row.slug}-r%"])
        cursor.execute("DELETE FROM reviewer_decision d USING bench_touched t, auth_user u WHERE d.item_id = t.item_id "
                       "AND u.id = d.reviewer_id AND u.username LIKE %s", [f"{project_row.slug}-r%"])
        cursor.execute(
            "UPDATE classify_item SET status = 'needs_review', label_id = NULL, labelled_by_id = NULL, "
            "labelled_at = NULL, escalated = false WHERE id IN (SELECT item_id FROM bench_touched) "
            "AND status <> 'needs_review'"
        )
        back = cursor.rowcount
        cursor.execute("UPDATE classify_item SET lease_owner_id = NULL, lease_token = NULL, lease_expires_at = NULL "
                       "WHERE project_id = %s AND lease_token IS NOT NULL", [project_row.pk])
        cursor.execute("DELETE FROM classify_trainingrun WHERE project_id = %s", [project_row.pk])
    return back


def vacuum(tables=("classify_item", "classify_prediction", "reviewer_decision", "reviewer_decision_labels")) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
