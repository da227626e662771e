"""The count triggers survive every migration on SQLite too.

``BacklogCount`` and ``StatusCount`` are kept by triggers on ``classify_item`` (migrations 0015
and 0019). On SQLite, Django applies many schema changes to a table (adding a generated column,
changing a field) by building a new table and renaming it, and the old table's triggers go with
it: migration 0021 did exactly that, and the embedded default's counts silently stopped. After
every ``migrate`` (``post_migrate``, registered in apps.py) this puts back any missing trigger with
the statements of the migration that created it, and recounts that table from the items (it may
have missed changes meanwhile). PostgreSQL keeps triggers through such changes: nothing to do.
"""

from __future__ import annotations

from importlib import import_module

from django.db import connections

# The migration that created each set of triggers: the count table it keeps (present once that
# migration has run) and the trigger names it creates on SQLite.
TRIGGER_MIGRATIONS = {
    "classify.migrations.0015_backlog_counts": (
        "classify_backlogcount", ("item_backlog_insert", "item_backlog_delete", "item_backlog_update")),
    "classify.migrations.0019_status_counts": (
        "classify_statuscount", ("item_status_count_insert", "item_status_count_delete", "item_status_count_update",
                                 "project_status_count_forget")),
}


def restore_count_triggers(*, using: str = "default") -> list[str]:
    """Re-create (and recount) each set of count triggers that is incomplete on a SQLite
    database. Returns the migrations whose triggers were put back."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        present = {name for (name,) in cursor.fetchall()}
        tables = set(connection.introspection.table_names(cursor))
    restored = []
    with connection.schema_editor() as editor:
        for module_name, (counted, names) in TRIGGER_MIGRATIONS.items():
            if set(names) <= present or counted not in tables:  # complete, or its migration has not run
                continue
            migration = import_module(module_name)
            for statement in migration.SQLITE_DROP:
                editor.execute(statement)
            migration.create(None, editor)  # recount, then the triggers
            restored.append(module_name)
    return restored


def on_post_migrate(sender, using: str = "default", **kwargs) -> None:
    restore_count_triggers(using=using)
