"""Results to S3: each settled item's result as one JSON file, in the Amazon A2I output shape.

The key follows A2I's layout, ``<prefix>/<project>/YYYY/MM/DD/hh/mm/ss/<loop name>/output.json``,
with the time the item was created and the loop name ``item-<id>-<event id>``: a retried
delivery overwrites its own file, and a later settlement of the same item (a correction) is a
new file beside it. Tools that read A2I output read these: ``inputContent`` is the item and the
model's scores, ``humanAnswers`` the human decisions (who, when, how long), empty when the
machine settled it.
"""

from __future__ import annotations

import json
from datetime import datetime

from classify import aws
from classify.models import Event, Project

from . import outbound
from .models import Delivery


def check_location(project: Project, location: str) -> tuple[str, str]:
    """(bucket, prefix) of a location the project may write to: under its ``<root>/<slug>/``
    (``classify.aws.confine_s3``), checked when the endpoint is added and before every write;
    else ``outbound.Refused`` saying where it may go."""
    try:
        bucket, prefix = aws.confine_s3(location, project=project, what="results location")
    except aws.S3LocationRefused as exc:
        raise outbound.Refused(str(exc)) from None
    return bucket, prefix.strip("/")


def output_key(prefix: str, event: Event) -> str:
    item = event.data.get("item") or {}
    created = datetime.fromisoformat(item["created_at"]) if item else event.created_at
    loop = f"item-{item['id']}-{event.pk}" if item else f"test-{event.pk}"
    parts = [prefix.strip("/"), event.project.slug, created.strftime("%Y/%m/%d/%H/%M/%S"), loop, "output.json"]
    return "/".join(part for part in parts if part)


def a2i_document(event: Event) -> dict:
    """The A2I output document for an ``item.settled`` event (or a test document for ``ping``)."""
    item = event.data.get("item")
    if item is None:
        return {"humanLoopName": f"test-{event.pk}", "inputContent": event.data, "humanAnswers": []}
    answers = [
        {"answerContent": {"labels": answer["labels"]}, "submissionTime": answer["at"],
         "timeSpentInSeconds": answer.get("seconds_spent"), "workerId": answer["reviewer"],
         "workerMetadata": {"identityData": {"identityProviderType": "Loupe", "sub": answer["reviewer"]}}}
        for answer in item.get("human_answers", [])
    ]
    return {
        "flowDefinitionArn": f"loupe:project/{event.project.slug}",
        "humanLoopName": f"item-{item['id']}-{event.pk}",
        "eventId": str(event.pk),
        "inputContent": {"item": item["id"], "filename": item["filename"], "sha256": item["sha256"],
                         "scores": item["scores"], "model": item["model"]},
        "humanAnswers": answers,
        "result": {"status": item["status"], "labels": item["labels"], "settled_by": item["settled_by"],
                   "settled_at": item["settled_at"], "reason": item["status_reason"]},
    }


def write(delivery: Delivery) -> outbound.Response:
    """Put the event's result file; S3 errors raise (the delivery is retried)."""
    bucket, prefix = check_location(delivery.event.project, delivery.endpoint.url)
    key = output_key(prefix, delivery.event)
    body = json.dumps(a2i_document(delivery.event), indent=1).encode()
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return outbound.Response(status=200, text=f"s3://{bucket}/{key}")
