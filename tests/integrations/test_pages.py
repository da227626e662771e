"""The Integrations page: project admins only; endpoints, test events, the delivery log, retries,
imports from S3 with their progress."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from classify.models import Event, Membership
from integrations.models import Delivery, Endpoint, S3Import
from tests.base import PASSWORD, make_colour_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    admin, reviewer, outsider = make_user("ada"), make_user("rex"), make_user("otto")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    return project, admin, reviewer, outsider


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_url(project) -> str:
    return f"/projects/{project.slug}/integrations/"


def test_only_project_admins_reach_the_page_and_its_actions(team):
    project, admin, reviewer, outsider = team
    endpoint = Endpoint.objects.create(project=project, url="https://hooks.example.com/x")
    other = make_colour_project("other", admin=outsider)
    foreign = Endpoint.objects.create(project=other, url="https://hooks.example.com/y")
    assert client_for(admin).get(page_url(project)).status_code == 200
    assert client_for(reviewer).get(page_url(project)).status_code == 403
    assert client_for(outsider).get(page_url(project)).status_code == 404
    action = f"{page_url(project)}endpoints/{endpoint.pk}/"
    assert client_for(reviewer).post(action, {"action": "delete"}).status_code == 403
    assert client_for(admin).post(f"{page_url(project)}endpoints/{foreign.pk}/", {"action": "delete"}).status_code == 404
    assert Endpoint.objects.count() == 2
    assert Client().get(page_url(project)).status_code == 302  # to the login page


def test_an_admin_adds_an_endpoint_and_private_addresses_are_refused_with_the_reason(team):
    project, admin, *_ = team
    client = client_for(admin)
    refused = client.post(page_url(project), {"action": "add_endpoint", "url": "https://10.0.0.8/hook"})
    assert "private, loopback" in refused.content.decode() and not Endpoint.objects.exists()
    refused = client.post(page_url(project), {"action": "add_endpoint", "url": "http://hooks.example.com/"})
    assert "must start with https://" in refused.content.decode()
    added = client.post(page_url(project), {"action": "add_endpoint", "url": "https://hooks.example.com/loupe",
                                            "event_types": ["item.settled"]}, follow=True)
    endpoint = Endpoint.objects.get()
    assert (endpoint.url, endpoint.event_types, endpoint.created_by) == ("https://hooks.example.com/loupe",
                                                                         ["item.settled"], admin)
    assert endpoint.secret in added.content.decode()  # shown to the admin to verify signatures


def test_send_test_event_pause_resume_and_delete(team, receiver, django_capture_on_commit_callbacks):
    project, admin, *_ = team
    client = client_for(admin)
    endpoint = Endpoint.objects.create(project=project, url=receiver.url())
    action = f"{page_url(project)}endpoints/{endpoint.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(action, {"action": "test"})
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["type"] == "ping"
    log = client.get(page_url(project)).content.decode()
    assert "ping" in log and "HTTP 200" in log and "Delivered" in log
    client.post(action, {"action": "toggle"})
    assert not Endpoint.objects.get().is_active
    client.post(action, {"action": "toggle"})
    assert Endpoint.objects.get().is_active
    client.post(action, {"action": "delete"})
    assert not Endpoint.objects.exists()


def test_a_paused_endpoint_gets_nothing(team, receiver, django_capture_on_commit_callbacks):
    from django.db import transaction

    from classify import events

    project, *_ = team
    Endpoint.objects.create(project=project, url=receiver.url(), is_active=False)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events.record_event(project_id=project.pk, type=Event.Type.RUN_PROMOTED, data={})
    assert not Delivery.objects.exists() and receiver.received == []


def test_a_paused_endpoint_keeps_its_pending_deliveries_until_it_is_resumed(team, receiver,
                                                                          django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from integrations import tasks

    project, admin, *_ = team
    endpoint = Endpoint.objects.create(project=project, url=receiver.url())
    event = Event.objects.create(project=project, type=Event.Type.RUN_PROMOTED, data={}, dispatched_at=timezone.now())
    Delivery.objects.create(endpoint=endpoint, event=event, next_attempt_at=timezone.now() - timedelta(minutes=5))
    toggle = f"{page_url(project)}endpoints/{endpoint.pk}/"
    client_for(admin).post(toggle, {"action": "toggle"})  # paused
    tasks.sweep()
    tasks.deliver(Delivery.objects.get().pk)  # even a message already in the queue sends nothing
    assert receiver.received == [] and Delivery.objects.get().state == Delivery.State.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin).post(toggle, {"action": "toggle"})  # resumed: what waited goes out at once
    assert Delivery.objects.get().state == Delivery.State.DELIVERED and len(receiver.received) == 1


def test_retry_now_starts_a_failed_delivery_over(team, receiver, settings, django_capture_on_commit_callbacks):
    project, admin, *_ = team
    endpoint = Endpoint.objects.create(project=project, url=receiver.url())
    event = Event.objects.create(project=project, type=Event.Type.PING, data={})
    delivery = Delivery.objects.create(endpoint=endpoint, event=event, state=Delivery.State.FAILED, attempts=8,
                                       last_error="HTTP 500")
    page = client_for(admin).get(page_url(project)).content.decode()
    assert "HTTP 500" in page and "Retry now" in page
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin).post(f"{page_url(project)}deliveries/{delivery.pk}/retry")
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (Delivery.State.DELIVERED, 1)


def test_the_import_form_takes_only_the_projects_own_s3_locations(team, settings):
    project, admin, *_ = team
    settings.LOUPE_S3_ROOTS = ["s3://acme-loupe/projects"]
    client = client_for(admin)
    refused = client.post(page_url(project), {"action": "import", "source": "s3://acme-loupe/projects/other/x"})
    assert "must be under s3://acme-loupe/projects/colours/" in refused.content.decode()
    assert not S3Import.objects.exists()


def test_an_import_from_the_page_runs_in_the_background_and_reports_progress(team, settings, moto_s3,
                                                                            django_capture_on_commit_callbacks):
    from tests.base import noisy_image

    project, admin, *_ = team
    settings.LOUPE_S3_ROOTS = ["s3://acme-loupe/projects"]
    moto_s3.create_bucket(Bucket="acme-loupe")
    for n in range(3):
        moto_s3.put_object(Bucket="acme-loupe", Key=f"projects/colours/in/{n}.png",
                           Body=noisy_image((200, 20, 20), seed=n))
    moto_s3.put_object(Bucket="acme-loupe", Key="projects/colours/in/bad.png", Body=b"nope")
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin).post(page_url(project), {"action": "import", "source": "s3://acme-loupe/projects/colours/in"})
    job = S3Import.objects.get()
    status = client_for(admin).get(f"{page_url(project)}imports/{job.pk}/status").json()
    assert status == {"id": job.pk, "state": "done", "state_display": "Done", "listed": 4, "listing_done": True,
                      "processed": 4, "imported": 3, "duplicates": 0, "skipped": 0, "failed": 1, "error": ""}
    page = client_for(admin).get(page_url(project)).content.decode()
    assert "4 of 4: 3 imported, 0 duplicates, 0 imported before, 1 failed" in page and "bad.png" in page
    Membership.objects.filter(user=admin).update(role=Membership.Role.REVIEWER)
    assert client_for(admin).get(f"{page_url(project)}imports/{job.pk}/status").status_code == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_progress_bar_follows_a_running_import(team, live_server, page):
    project, admin, *_ = team
    job = S3Import.objects.create(project=project, source="s3://acme-loupe/projects/colours/in",
                                  state=S3Import.State.RUNNING, listed=10, imported=3)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", admin.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}{page_url(project)}")
    bar = page.locator(f"[data-status-url$='/imports/{job.pk}/status'] progress")
    assert bar.get_attribute("value") == "3"
    S3Import.objects.filter(pk=job.pk).update(imported=9, failed=1, state=S3Import.State.DONE, listing_done=True)
    page.wait_for_function(f"document.querySelector(\"[data-status-url$='/imports/{job.pk}/status'] progress\").value == 10")
    assert "10 of 10: 9 imported, 0 duplicates, 0 imported before, 1 failed" in page.locator(".import-counts").inner_text()
    assert page.locator(".import-state").inner_text() == "Done"
