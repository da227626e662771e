"""S3 locations a project may use: under ``<root>/<project slug>/`` of an allowed root.

Adapter over the installation's S3 allowlist so the integrations read one place.
"""

from __future__ import annotations

from django.conf import settings

from classify.aws import parse_s3_uri
from classify.models import Project


def parse_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix"); anything else is a ValueError."""
    bucket, prefix = parse_s3_uri(url, bucket_rules=True)
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"{url!r}: no . or .. in the prefix")
    return bucket, prefix.strip("/")


def project_roots(project: Project) -> list[str]:
    """The ``s3://bucket/prefix/<slug>`` locations the project may use."""
    roots = []
    for root in settings.LOUPE_S3_ROOTS:
        bucket, prefix = parse_s3(root)
        roots.append(f"s3://{bucket}/" + "/".join(part for part in (prefix, project.slug) if part))
    return roots


def check_s3_location(project: Project, url: str) -> str:
    """The normalised location if it lies inside one of the project's roots, else ValueError."""
    bucket, prefix = parse_s3(url)
    location = f"s3://{bucket}/{prefix}".rstrip("/")
    for root in project_roots(project):
        if location == root or location.startswith(root + "/"):
            return location
    allowed = ", ".join(root + "/" for root in project_roots(project)) or "none (LOUPE_S3_ROOTS is empty)"
    raise ValueError(f"{url} is outside this project's S3 locations; allowed: {allowed}")
