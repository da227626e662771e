"""Every prediction of a project with its scores, the thresholds in force, the model version and
the final label, for offline analysis (``manage.py export_predictions``).

Rows are read in primary-key batches as plain tuples (no model instances) and written as they
come, so memory stays flat whatever the project's size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import TextIO

from classify.models import Item, Prediction, Project

BATCH = 2000
FIELDS = ("prediction_id", "item_id", "created_at", "backend", "model_version", "top_label", "top_score", "margin",
          "decision", "reason", "latency_ms", "cost_usd", "reused", "item_status", "final_label", "final_by",
          "human_label", "labelled_at")


def prediction_rows(project: Project, *, since: datetime | None = None) -> Iterator[dict]:
    """One dict per prediction, oldest first. ``final_label`` is the item's label now; ``final_by``
    says whether a person (``human``) or auto-accept (``auto``) gave it; ``human_label`` is set only
    for a person's label."""
    predictions = Prediction.objects.filter(item__project=project)
    if since is not None:
        predictions = predictions.filter(created_at__gte=since)
    columns = ("pk", "item_id", "created_at", "backend", "model_version", "top_label", "top_score", "margin",
               "decision", "reason", "latency_ms", "cost_usd", "reused_from_id", "item__status", "item__label__name",
               "item__labelled_at", "scores", "thresholds")
    last = 0
    while True:
        batch = list(predictions.filter(pk__gt=last).order_by("pk").values_list(*columns)[:BATCH])
        if not batch:
            return
        for row in batch:
            yield _row(dict(zip(columns, row, strict=True)))
        last = batch[-1][0]


def _row(raw: dict) -> dict:
    human = raw["item__status"] == Item.Status.REVIEWED
    final = raw["item__label__name"] if raw["item__status"] in (Item.Status.REVIEWED, Item.Status.AUTO_ACCEPTED) else None
    return {
        "prediction_id": raw["pk"], "item_id": raw["item_id"], "created_at": raw["created_at"].isoformat(),
        "backend": raw["backend"], "model_version": raw["model_version"], "top_label": raw["top_label"],
        "top_score": raw["top_score"], "margin": raw["margin"], "decision": raw["decision"], "reason": raw["reason"],
        "latency_ms": raw["latency_ms"], "cost_usd": float(raw["cost_usd"]), "reused": raw["reused_from_id"] is not None,
        "item_status": raw["item__status"], "final_label": final, "final_by": ("human" if human else "auto") if final else None,
        "human_label": final if human else None,
        "labelled_at": raw["item__labelled_at"].isoformat() if raw["item__labelled_at"] else None,
        "scores": raw["scores"], "thresholds": raw["thresholds"],
    }


def write_jsonl(rows: Iterator[dict], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def write_csv(rows: Iterator[dict], out: TextIO, *, classes: list[str]) -> int:
    """CSV: the fixed columns, then ``score:<class>``, ``threshold:<class>`` and ``margin:<class>``
    for each of the project's classes (empty where a prediction did not have it)."""
    writer = csv.writer(out)
    writer.writerow([*FIELDS, *(f"score:{c}" for c in classes), *(f"threshold:{c}" for c in classes),
                     *(f"margin:{c}" for c in classes)])
    count = 0
    for row in rows:
        scores, rules = row["scores"] or {}, row["thresholds"] or {}
        writer.writerow([_cell(row[name]) for name in FIELDS]
                        + [_cell(scores.get(c)) for c in classes]
                        + [_cell((rules.get(c) or {}).get("threshold")) for c in classes]
                        + [_cell((rules.get(c) or {}).get("margin")) for c in classes])
        count += 1
    return count


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
