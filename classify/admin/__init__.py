"""Django admin: where project admins tune thresholds, mappings, exemplars and backends.

Non-superuser staff see and change only the projects they administer (``scoping``). What
machines and people produced (items' model outputs and leases, predictions, model versions and
their metrics, decisions) is read-only here: it changes only through the services that keep its
rules. One module per page family: ``labels``, ``projects``, ``items``, ``machines`` (model
versions and budgets); importing them registers their pages (Django's admin autodiscovery
imports this package).
"""

from __future__ import annotations

from . import items, labels, machines, projects  # noqa: F401  (registers the pages)
