"""The review queue's learning order as a PostgreSQL index.

``reviewer.selectors.ordered`` sorts the ``learning`` order (the default of every project on the
local backend) by ``learning_priority ASC NULLS LAST, margin ASC NULLS FIRST, id``. The index
``item_learning_order`` (project, status, learning_priority) gives only the first key, so every
claim read and sorted all waiting items of the project: 600 ms per claim at 100k waiting, where
the same claim in margin order (``item_review_queue_margin``) took 4 ms. This partial index holds
the order exactly, over waiting items only, so a claim walks it from the front. SQLite needs none
(and cannot say NULLS FIRST in an index), hence RunPython rather than Meta.indexes.
"""

from django.db import migrations

INDEX = "item_review_queue_learning"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON classify_item "
            "(project_id, learning_priority ASC NULLS LAST, margin ASC NULLS FIRST, id) WHERE status = 'needs_review'"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("classify", "0015_backlog_counts")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
