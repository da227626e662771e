"""Media on S3 (django-storages, moto in-process): uploads land in the private bucket and images
are handed out only as short-lived presigned URLs, to members."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse

from classify.services import intake
from tests.base import MEDIA_BUCKET, make_colour_project, make_user, noisy_image

pytestmark = pytest.mark.django_db


def test_uploads_are_stored_in_the_bucket_and_served_by_presigned_redirect(s3_media, django_capture_on_commit_callbacks):
    reviewer, outsider = make_user("rey"), make_user("otto")
    project = make_colour_project(reviewer=reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=noisy_image((200, 20, 20), seed=1), filename="r.png")
    item.refresh_from_db()
    assert item.status == "auto_accepted"  # the worker read the image back from S3
    stored = s3_media.get_object(Bucket=MEDIA_BUCKET, Key=f"loupe/{item.image.name}")
    assert stored["Body"].read(3) == b"\xff\xd8\xff"
    acl = s3_media.get_object_acl(Bucket=MEDIA_BUCKET, Key=f"loupe/{item.image.name}")
    assert not [g for g in acl["Grants"] if g["Grantee"].get("URI", "").endswith("AllUsers")]  # not public

    client = Client()
    client.force_login(reviewer)
    response = client.get(reverse("classify:item_image", args=[item.pk]))
    assert response.status_code == 302
    url = urlparse(response["Location"])
    query = parse_qs(url.query)
    assert url.path.endswith(item.image.name) and query["X-Amz-Expires"] == ["300"] and "X-Amz-Signature" in query
    assert response["Cache-Control"] == "private, max-age=150"  # a cached redirect outlives no signature
    client.force_login(outsider)
    assert client.get(reverse("classify:item_image", args=[item.pk])).status_code == 404
