"""The review queue's margin order as a PostgreSQL index.

``reviewer.selectors.ordered`` sorts by ``margin ASC NULLS FIRST, id``. PostgreSQL's btree
default is NULLS LAST, so (project, status, margin) cannot give that order and every claim
sorted all waiting items. This partial index holds the order exactly, over waiting items only.
SQLite needs none: it sorts NULLs first anyway (the existing index serves it) and cannot say
NULLS FIRST in an index, hence RunPython rather than Meta.indexes.
"""

from django.db import migrations

INDEX = "item_review_queue_margin"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON classify_item (project_id, margin ASC NULLS FIRST, id) "
            "WHERE status = 'needs_review'"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("classify", "0005_bakeoff")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
