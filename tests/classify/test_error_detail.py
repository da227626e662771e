"""Members see short failure reasons; the AWS detail (roles, account ids, ARNs) is for project
admins and the log."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classify.models import Item
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db
DETAIL = ("Backend error: rekognition AccessDeniedException: User: arn:aws:iam::123456789012:role/loupe-prod "
          "is not authorized to perform: rekognition:DetectLabels (the AWS credentials lack permission)")


@pytest.fixture
def failed_item():
    ada, rey = make_user("ada", is_staff=True), make_user("rey")
    project = make_colour_project(admin=ada, reviewer=rey)
    item = make_review_item(project)
    Item.objects.filter(pk=item.pk).update(
        status_reason="Backend error: rekognition AccessDeniedException (the AWS credentials lack permission)",
        error_detail=DETAIL)
    return item, ada, rey


def pages(client: Client, item: Item) -> list[bytes]:
    return [client.get(reverse("classify:item_detail", args=[item.project.slug, item.pk])).content,
            client.get(reverse("classify:project", args=[item.project.slug])).content,
            client.get(reverse("api:item_detail", args=[item.pk])).content,
            client.get(reverse("api:project_items", args=[item.project.slug])).content]


def test_a_reviewer_sees_the_short_reason_and_no_account_or_role(failed_item):
    item, _, rey = failed_item
    client = Client()
    client.force_login(rey)
    for content in pages(client, item):
        assert b"AccessDeniedException" in content
        assert b"123456789012" not in content and b"arn:aws" not in content


def test_a_project_admin_sees_the_full_error_on_the_item_page(failed_item):
    item, ada, _ = failed_item
    client = Client()
    client.force_login(ada)
    page = client.get(reverse("classify:item_detail", args=[item.project.slug, item.pk])).content.decode()
    assert "arn:aws:iam::123456789012:role/loupe-prod" in page
    assert b"123456789012" not in client.get(reverse("api:item_detail", args=[item.pk])).content
