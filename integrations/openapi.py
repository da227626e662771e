"""The OpenAPI 3.1 description of ``/api/v1/``, served at ``/api/v1/schema/``.

Written as data next to the code it describes and kept in step by
``tests/integrations/test_openapi.py``: every route Django resolves under ``/api/v1/`` must be
described here (and nothing else), and real responses of every operation, errors included, must
validate against it (openapi-core). Change a view, change this file, or that test fails.
"""

from __future__ import annotations

import json

from classify.models import Item

VERSION = "1.0.0"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict, *, required: list[str] | None = None, extra: bool = True) -> dict:
    schema = {"type": "object", "properties": properties, "required": list(properties) if required is None else required}
    if not extra:
        schema["additionalProperties"] = False
    return schema


STRING, INTEGER, NUMBER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
DATETIME = {"type": "string", "format": "date-time"}
SCORES = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
          "description": "Every class of the project, unknown included; sums to 1."}

SCHEMAS = {
    "Error": obj({"error": STRING, "allowed": {"type": "array", "items": STRING}, "filename": STRING},
                 required=["error"]),
    "Decision": obj({
        "outcome": {"type": "string", "enum": ["auto_accepted", "needs_review"]}, "reason": STRING,
        "top_label": STRING, "top_score": NUMBER, "margin": NUMBER,
        "thresholds": {"type": "object", "additionalProperties": obj({"threshold": NUMBER, "margin": NUMBER})},
        "backend": STRING, "model_version": STRING, "latency_ms": NUMBER,
        "reused_from_item": nullable(INTEGER), "created_at": DATETIME,
    }),
    "Item": obj({
        "id": INTEGER, "project": STRING,
        "status": {"type": "string", "enum": list(Item.Status.values)},
        "status_display": STRING, "status_reason": STRING, "label": nullable(STRING), "filename": STRING,
        "width": INTEGER, "height": INTEGER, "sha256": STRING, "attempts": INTEGER, "source_format": STRING,
        "duplicate_of": nullable(INTEGER), "near_duplicate_of": nullable(INTEGER),
        "created_at": DATETIME, "updated_at": DATETIME, "image_url": STRING, "page_url": STRING,
        "scores": nullable(SCORES), "decision": nullable(ref("Decision")),
    }),
    "ItemList": obj({
        "items": {"type": "array", "items": ref("Item")},
        "counts": {"type": "object", "additionalProperties": INTEGER, "description": "Items per status."},
    }),
    "Stats": obj({
        "remaining": INTEGER, "pace_today": INTEGER,
        "by_class": {"type": "object", "additionalProperties": INTEGER,
                     "description": "Items you could claim, per class the model put them in."},
    }, required=["remaining", "pace_today", "by_class"]),
    "StatsExplained": {"allOf": [ref("Stats"), obj({"hidden": obj({
        "skipped": INTEGER, "skipped_back_at": nullable(DATETIME), "held": INTEGER, "awaiting_others": INTEGER},
    )})]},
    "Exemplar": obj({"id": INTEGER, "label": STRING, "label_id": INTEGER, "image_url": STRING}),
    "ExemplarRemoved": obj({"removed": INTEGER}),
    "Learning": obj({
        "project": STRING, "mode": {"type": "string", "enum": ["automatic", "approval"]},
        "target_precision": NUMBER, "backend": STRING,
        "active_model": nullable(obj({"version": STRING, "coverage": nullable(NUMBER), "provenance": STRING,
                                      "human_labels_seen": INTEGER, "created_at": DATETIME})),
        "refit_running": BOOLEAN,
        "runs": {"type": "array", "items": obj({
            "id": INTEGER, "kind": STRING, "state": STRING, "step": STRING, "reason": STRING,
            "candidate": nullable(STRING), "coverage": nullable(NUMBER), "labels": nullable(INTEGER),
            "seconds": nullable(NUMBER), "created_at": DATETIME})},
        "classes": {"type": "array", "items": obj({
            "name": STRING, "threshold": NUMBER, "margin": NUMBER, "hold": STRING,
            "calibration": nullable(obj({})), "live": obj({})})},
    }),
    "Claim": obj({
        "lease": obj({"token": {"type": "string", "format": "uuid"}, "expires_at": DATETIME}),
        "item": ref("Item"),
        "candidates": {"type": "array", "items": obj({
            "key": nullable({"type": "integer", "minimum": 1, "maximum": 9}), "label": STRING, "label_id": INTEGER,
            "score": nullable(NUMBER), "exemplars": {"type": "array", "items": STRING},
            "exemplars_auto": {"type": "boolean", "description": "The pictures are confident auto-accepted items "
                                                                "standing in for missing exemplars."}})},
        "unknown": obj({"label": STRING, "label_id": INTEGER, "score": nullable(NUMBER), "key": {"const": 0}}),
        "top": nullable(STRING),
        "labels": {"type": "array", "items": obj({
            "id": INTEGER, "name": STRING, "is_unknown": BOOLEAN,
            "key": nullable({"type": "integer", "minimum": 0, "maximum": 9})})},
        "multi_label": BOOLEAN,
    }),
    "ClaimWithStats": {"allOf": [ref("Claim"), ref("Stats")]},
    "ClaimsWithStats": {"allOf": [obj({"claims": {"type": "array", "items": ref("Claim")}}), ref("Stats")]},
    "GridClaims": {"allOf": [obj({"label": STRING, "claims": {"type": "array", "items": ref("Claim")}}),
                             ref("Stats")]},
    "DecisionRequest": obj({
        "labels": {"type": "array", "items": {"anyOf": [STRING, INTEGER]}, "minItems": 1,
                   "description": "Class names or ids; several only in multi-label projects."},
        "seconds_spent": nullable(NUMBER)}, required=["labels"]),
    "DecisionStored": {"allOf": [obj({
        "decision": INTEGER, "item": INTEGER,
        "status": {"type": "string", "enum": ["reviewed", "needs_review"],
                   "description": "needs_review while a consensus still needs other reviewers."},
        "labels": {"type": "array", "items": STRING}}), ref("Stats")]},
    "Skipped": {"allOf": [obj({"skipped": {"const": True}}), ref("Stats")]},
    "Released": obj({"released": {"const": True}}),
    "RenewRequest": obj({"tokens": {"type": "array", "items": STRING, "maxItems": 100}}),
    "Renewed": obj({"renewed": {"type": "array", "items": STRING}, "lost": {"type": "array", "items": STRING}}),
    "GridClaimRequest": obj({"label": STRING, "exclude": {"type": "array", "items": INTEGER}}, required=[]),
}


def error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def json_body(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


UNAUTHORISED = error("No or bad credentials.")
FORBIDDEN = error("A session request without a valid CSRF token, or a write with a read-only token.")
NOT_FOUND = error("No such project or item, or you are not a member.")
SLUG = {"name": "slug", "in": "path", "required": True, "schema": STRING, "description": "The project's slug."}
TOKEN = {"name": "token", "in": "path", "required": True, "schema": STRING, "description": "A lease token."}


def operation(summary: str, responses: dict, *, tag: str, params: list | None = None, body: dict | None = None,
              description: str = "") -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {"401": UNAUTHORISED, **responses}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def json_request(schema_name: str, *, required: bool = False) -> dict:
    return {"required": required, "content": {"application/json": {"schema": ref(schema_name)}}}


PATHS = {
    "/api/v1/projects/{slug}/items/": {
        "parameters": [SLUG],
        "get": operation("List a project's items, newest first", {
            "200": json_body("ItemList", "The items and the project's count per status."),
            "400": error("A bad ids or status parameter."), "404": NOT_FOUND,
        }, tag="items", params=[
            {"name": "ids", "in": "query", "schema": STRING, "description": "Comma-separated item ids."},
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(Item.Status.values)}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500},
             "description": "Default 100, at most 500."},
        ]),
        "post": operation("Upload one image", {
            "201": json_body("Item", "Stored: usually queued for classification, or rejected by the quality checks."),
            "400": error("No file or several; not an image; damaged; too many pixels; too large."),
            "403": FORBIDDEN, "404": NOT_FOUND, "413": error("The request body is too large."),
        }, tag="items", body={"required": True, "content": {"multipart/form-data": {"schema": obj(
            {"image": {"type": "string", "contentMediaType": "application/octet-stream"}})}}}),
    },
    "/api/v1/items/{item_id}/": {
        "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": INTEGER}],
        "get": operation("One item with its status, scores and routing decision", {
            "200": json_body("Item", "The item."), "404": NOT_FOUND}, tag="items"),
    },
    "/api/v1/projects/{slug}/review/claim/": {
        "parameters": [SLUG],
        "post": operation("Lease the next item of the review queue", {
            "200": {"description": "A claim (count=1), or {claims: [...]} (count>1).", "content": {
                "application/json": {"schema": {"anyOf": [ref("ClaimWithStats"), ref("ClaimsWithStats")]}}}},
            "204": {"description": "Nothing left for you."},
            "400": error("count is not a number."), "403": FORBIDDEN, "404": NOT_FOUND,
        }, tag="review", params=[{"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1},
                                  "description": "Lease several at once (at most 5) for prefetching."}]),
    },
    "/api/v1/projects/{slug}/review/grid/claim/": {
        "parameters": [SLUG],
        "post": operation("Lease a page of items the model put in one class", {
            "200": json_body("GridClaims", "Up to grid_size claims, best score first."),
            "204": {"description": "Nothing left in that class."},
            "400": error("exclude is not a list of item ids."), "403": FORBIDDEN, "404": NOT_FOUND,
        }, tag="review", body=json_request("GridClaimRequest")),
    },
    "/api/v1/projects/{slug}/review/undo/": {
        "parameters": [SLUG],
        "post": operation("Take back your last label in this project and lease the item again", {
            "200": json_body("ClaimWithStats", "The item, leased to you again."),
            "400": error("Nothing to undo."), "403": FORBIDDEN, "404": NOT_FOUND,
            "409": error("A colleague holds or decided the item since."),
        }, tag="review"),
    },
    "/api/v1/projects/{slug}/review/stats/": {
        "parameters": [SLUG],
        "get": operation("What is left and your pace today", {
            "200": json_body("StatsExplained", "Counts, and what is hidden from you and why."),
            "404": NOT_FOUND}, tag="review"),
    },
    "/api/v1/projects/{slug}/learning/": {
        "parameters": [SLUG],
        "get": operation("Where the learning loop stands: mode, active model, refits, thresholds, audits", {
            "200": json_body("Learning", "The learning state (docs/retraining.md)."), "404": NOT_FOUND},
            tag="items"),
    },
    "/api/v1/projects/{slug}/classes/{label_id}/exemplars/": {
        "parameters": [SLUG, {"name": "label_id", "in": "path", "required": True, "schema": INTEGER}],
        "post": operation("Add an exemplar picture to a class (project admins)", {
            "201": json_body("Exemplar", "Stored (the same checks as any upload)."),
            "400": error("No file or several; not a usable image."), "403": error(
                "Not a project admin, or a session request without a valid CSRF token."),
            "404": error("No such project or class, or you are not a member."),
        }, tag="exemplars", body={"required": True, "content": {"multipart/form-data": {"schema": obj(
            {"image": {"type": "string", "contentMediaType": "application/octet-stream"}})}}}),
    },
    "/api/v1/exemplars/{exemplar_id}/": {
        "parameters": [{"name": "exemplar_id", "in": "path", "required": True, "schema": INTEGER}],
        "delete": operation("Remove an exemplar (project admins)", {
            "200": json_body("ExemplarRemoved", "Removed."), "403": error("Not a project admin."),
            "404": error("No such exemplar, or you are not a member."),
        }, tag="exemplars"),
    },
    "/api/v1/reviews/renew/": {
        "post": operation("Extend your leases", {
            "200": json_body("Renewed", "Which leases were renewed and which are lost."), "403": FORBIDDEN,
            "400": error("The body is not valid JSON."),
        }, tag="review", body=json_request("RenewRequest")),
    },
    "/api/v1/reviews/{token}/decision/": {
        "parameters": [TOKEN],
        "post": operation("Label the leased item", {
            "201": json_body("DecisionStored", "Stored."),
            "400": error("An unknown class, a bad combination, or a bad seconds_spent."), "403": FORBIDDEN,
            "409": error("The lease ran out, belongs to someone else, or was used already; nothing is stored."),
        }, tag="review", body=json_request("DecisionRequest", required=True)),
    },
    "/api/v1/reviews/{token}/skip/": {
        "parameters": [TOKEN],
        "post": operation("Pass on the leased item (not offered to you again for an hour)", {
            "200": json_body("Skipped", "Skipped."), "403": FORBIDDEN, "409": error("The lease is no longer yours."),
        }, tag="review"),
    },
    "/api/v1/reviews/{token}/release/": {
        "parameters": [TOKEN],
        "post": operation("Give the item back without a decision", {
            "200": json_body("Released", "Released."), "403": FORBIDDEN, "409": error("The lease is no longer yours."),
        }, tag="review"),
    },
    "/api/v1/schema/": {
        "get": operation("This description (OpenAPI 3.1, JSON)", {
            "200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}},
        }, tag="meta"),
    },
}


def schema() -> dict:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loupe API", "version": VERSION,
                 "description": "Upload images, read their classification, and work the review queue. "
                                "Errors are JSON: {\"error\": \"...\"}. See docs/api.md."},
        "servers": [{"url": "/"}],
        "security": [{"token": []}, {"session": []}],
        "tags": [{"name": "items"}, {"name": "review"}, {"name": "exemplars"}, {"name": "meta"}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "`Token <key>` (made on /account/ or with manage.py api_token "
                                         "<username>); a token may be limited to one project, to reading, "
                                         "and in time (docs/security.md)."},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid",
                            "description": "The browser session; writes need the X-CSRFToken header."},
            },
        },
    }


def operations() -> list[dict]:
    """Every operation flattened for the reference page: path, method, parameters, body, responses."""
    rows = []
    for path, item in PATHS.items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            body = op.get("requestBody", {}).get("content", {})
            rows.append({
                "path": path, "method": method.upper(), "summary": op["summary"], "tag": op["tags"][0],
                "anchor": f"{method}-{path.strip('/').replace('/', '-').replace('{', '').replace('}', '')}",
                "parameters": shared + op.get("parameters", []),
                "body": [(media, json.dumps(spec["schema"], indent=1)) for media, spec in body.items()],
                "responses": [(status, spec["description"], json.dumps(spec.get("content", {}).get(
                    "application/json", {}).get("schema"), indent=1) if spec.get("content") else "")
                    for status, spec in sorted(op["responses"].items())],
            })
    return rows
