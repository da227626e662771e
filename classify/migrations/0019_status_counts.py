"""StatusCount, kept by triggers on classify_item (PostgreSQL and SQLite): items per
(project, status, label).

PostgreSQL: statement-level triggers with transition tables append each statement's net change
per (project, status, label) as rows; nothing is updated in place, so no transaction ever waits for
another on a counter row (an upload, a worker's batch and the sweeper moving items the other way
would otherwise lock the same rows in opposite orders). The sweeper folds the rows
(``classify.services.counts``).

Both: the rows of a deleted project go with its row, by a trigger on the project table (no
foreign key: deleting a project deletes and updates its items first, whose triggers still append
to its counts; the project's row goes last, and its counts with it).

SQLite (one writer at a time): row triggers keep one row per (project, status, label).

Existing items are counted once when the migration runs.
"""

import django.db.models.deletion
from django.db import migrations, models

POSTGRESQL = """
CREATE OR REPLACE FUNCTION loupe_status_count_insert() RETURNS trigger AS $$
BEGIN
  INSERT INTO classify_statuscount (project_id, status, label_id, n)
  SELECT project_id, status, label_id, COUNT(*) FROM new_items GROUP BY project_id, status, label_id;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION loupe_status_count_delete() RETURNS trigger AS $$
BEGIN
  INSERT INTO classify_statuscount (project_id, status, label_id, n)
  SELECT project_id, status, label_id, -COUNT(*) FROM old_items GROUP BY project_id, status, label_id;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION loupe_status_count_update() RETURNS trigger AS $$
BEGIN
  INSERT INTO classify_statuscount (project_id, status, label_id, n)
  SELECT project_id, status, label_id, SUM(n) FROM (
    SELECT project_id, status, label_id, -1 AS n FROM old_items
    UNION ALL SELECT project_id, status, label_id, 1 FROM new_items
  ) AS changes GROUP BY project_id, status, label_id HAVING SUM(n) <> 0;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION loupe_status_count_forget() RETURNS trigger AS $$
BEGIN
  DELETE FROM classify_statuscount WHERE project_id = OLD.id;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER project_status_count_forget AFTER DELETE ON classify_project
  FOR EACH ROW EXECUTE FUNCTION loupe_status_count_forget();
CREATE TRIGGER item_status_count_insert AFTER INSERT ON classify_item
  REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT EXECUTE FUNCTION loupe_status_count_insert();
CREATE TRIGGER item_status_count_delete AFTER DELETE ON classify_item
  REFERENCING OLD TABLE AS old_items FOR EACH STATEMENT EXECUTE FUNCTION loupe_status_count_delete();
CREATE TRIGGER item_status_count_update AFTER UPDATE ON classify_item
  REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items FOR EACH STATEMENT
  EXECUTE FUNCTION loupe_status_count_update();
"""

POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS item_status_count_insert ON classify_item;
DROP TRIGGER IF EXISTS item_status_count_delete ON classify_item;
DROP TRIGGER IF EXISTS item_status_count_update ON classify_item;
DROP TRIGGER IF EXISTS project_status_count_forget ON classify_project;
DROP FUNCTION IF EXISTS loupe_status_count_forget();
DROP FUNCTION IF EXISTS loupe_status_count_insert();
DROP FUNCTION IF EXISTS loupe_status_count_delete();
DROP FUNCTION IF EXISTS loupe_status_count_update();
"""

_SAME_KEY = "project_id = {row}.project_id AND status = {row}.status AND label_id IS {row}.label_id"
_SQLITE_ADD = f"""
  INSERT INTO classify_statuscount (project_id, status, label_id, n) SELECT NEW.project_id, NEW.status, NEW.label_id, 0
  WHERE NOT EXISTS (SELECT 1 FROM classify_statuscount WHERE {_SAME_KEY.format(row="NEW")});
  UPDATE classify_statuscount SET n = n + 1 WHERE {_SAME_KEY.format(row="NEW")};"""
_SQLITE_SUBTRACT = f"""
  UPDATE classify_statuscount SET n = n - 1 WHERE {_SAME_KEY.format(row="OLD")};"""

SQLITE = [
    f"CREATE TRIGGER item_status_count_insert AFTER INSERT ON classify_item BEGIN {_SQLITE_ADD} END",
    f"CREATE TRIGGER item_status_count_delete AFTER DELETE ON classify_item BEGIN {_SQLITE_SUBTRACT} END",
    "CREATE TRIGGER project_status_count_forget AFTER DELETE ON classify_project "
    "BEGIN DELETE FROM classify_statuscount WHERE project_id = OLD.id; END",
    "CREATE TRIGGER item_status_count_update AFTER UPDATE OF status, project_id, label_id ON classify_item "
    "WHEN OLD.status IS NOT NEW.status OR OLD.project_id IS NOT NEW.project_id OR OLD.label_id IS NOT NEW.label_id "
    f"BEGIN {_SQLITE_SUBTRACT} {_SQLITE_ADD} END",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS item_status_count_insert", "DROP TRIGGER IF EXISTS item_status_count_delete",
               "DROP TRIGGER IF EXISTS item_status_count_update", "DROP TRIGGER IF EXISTS project_status_count_forget"]

COUNT_EXISTING = """
INSERT INTO classify_statuscount (project_id, status, label_id, n)
SELECT project_id, status, label_id, COUNT(*) FROM classify_item GROUP BY project_id, status, label_id
"""


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = [POSTGRESQL] if vendor == "postgresql" else SQLITE if vendor == "sqlite" else None
    if statements is None:
        raise RuntimeError(f"Loupe's status counts need triggers written for {vendor}")
    schema_editor.execute("DELETE FROM classify_statuscount")
    schema_editor.execute(COUNT_EXISTING)
    for statement in statements:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in [POSTGRESQL_DROP] if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('classify', '0018_budget_spend'),
    ]

    operations = [
        migrations.CreateModel(
            name='StatusCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(max_length=16)),
                ('n', models.BigIntegerField(default=0)),
                ('label', models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='classify.label')),
                ('project', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='classify.project')),
            ],
        ),
        migrations.RunPython(create, drop, elidable=False),
    ]
