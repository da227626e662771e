"""Folding the status-count ledger (``StatusCount``) that the item table's triggers append to.

On PostgreSQL every statement that inserts, deletes or moves items appends its net change per
(project, status, label); reads sum the rows, so they stay exact whatever has not been folded yet, and
stay small because the sweeper folds them here every LOUPE_SWEEP_EVERY_SECONDS. On SQLite the
triggers keep one row per key already: nothing to fold.
"""

from __future__ import annotations

from django.db import connection, transaction

#: The advisory lock that keeps two sweepers from folding the same rows at once.
FOLD_LOCK = 0x10_0C0E_5C

# Only keys (project, status, label) with more than one row are rewritten; keys summing to zero go.
# Rows appended by transactions that commit after this statement's snapshot are not seen and
# stay for the next fold; the sum of every key is the same before and after.
FOLD = """
WITH busy AS (
  SELECT project_id, status, label_id FROM classify_statuscount
  GROUP BY project_id, status, label_id HAVING COUNT(*) > 1 OR SUM(n) = 0
), gone AS (
  DELETE FROM classify_statuscount c USING busy b
  WHERE c.project_id = b.project_id AND c.status = b.status AND c.label_id IS NOT DISTINCT FROM b.label_id
  RETURNING c.project_id, c.status, c.label_id, c.n
), kept AS (
  INSERT INTO classify_statuscount (project_id, status, label_id, n)
  SELECT project_id, status, label_id, SUM(n) FROM gone GROUP BY project_id, status, label_id HAVING SUM(n) <> 0
  RETURNING 1
)
SELECT (SELECT COUNT(*) FROM gone) - (SELECT COUNT(*) FROM kept)
"""


def compact_status_counts() -> int:
    """Fold each key's rows into one (none when they sum to zero); returns how many rows fewer
    there are.

    One sweeper at a time (an advisory lock; a second one returns 0 at once)."""
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLD_LOCK])
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute(FOLD)
        return cursor.fetchone()[0]
