"""Webhooks against a real local receiver: signatures, retries, SSRF refusal, the outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from classify import events
from classify.models import Event
from integrations import deliveries, outbound, signing, tasks
from integrations.models import Delivery, Endpoint
from tests.base import make_colour_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return make_colour_project(admin=make_user("ada"))


def emit(project, capture, type=Event.Type.RUN_PROMOTED, data=None) -> Event:
    """Record an event the way services do (inside a transaction) and run the after-commit hooks."""
    with capture(execute=True), transaction.atomic():
        return events.record_event(project_id=project.pk, type=type, data=data or {"n": 1})


def only_delivery() -> Delivery:
    (delivery,) = Delivery.objects.all()
    return delivery


class SignatureTests:
    def test_each_request_is_signed_and_verifies_with_the_endpoint_secret(self, project, receiver,
                                                                          django_capture_on_commit_callbacks):
        endpoint = deliveries.create_endpoint(project=project, url=receiver.url())
        event = emit(project, django_capture_on_commit_callbacks)
        (request,) = receiver.wait_for(1)
        assert signing.verify(endpoint.secret, request.body, request.headers[signing.HEADER])
        # As docs/integrations.md tells receivers to check it: HMAC-SHA256 over "<t>.<raw body>".
        t, v1 = (part.split("=", 1)[1] for part in request.headers["Loupe-Signature"].split(","))
        assert v1 == hmac.new(endpoint.secret.encode(), f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
        assert abs(int(t) - time.time()) < 60
        body = json.loads(request.body)
        assert body["id"] == str(event.pk) == request.headers["Loupe-Event-Id"]
        assert body["type"] == "training_run.promoted" and body["project"] == project.slug
        assert body["data"] == {"n": 1}
        assert only_delivery().state == Delivery.State.DELIVERED

    def test_a_changed_body_another_secret_or_an_old_timestamp_fails_verification(self):
        body = b'{"id": "1"}'
        header = signing.sign("whsec_a", body)
        assert signing.verify("whsec_a", body, header)
        for secret, payload, head in [("whsec_a", body + b" ", header), ("whsec_b", body, header),
                                      ("whsec_a", body, signing.sign("whsec_a", body, int(time.time()) - 301))]:
            with pytest.raises(signing.InvalidSignature):
                signing.verify(secret, payload, head)


class RetryTests:
    def test_it_retries_after_500s_until_the_receiver_accepts(self, project, receiver,
                                                             django_capture_on_commit_callbacks):
        receiver.script = [500, 503, 200]
        deliveries.create_endpoint(project=project, url=receiver.url())
        event = emit(project, django_capture_on_commit_callbacks)
        requests = receiver.wait_for(3)
        assert {json.loads(r.body)["id"] for r in requests} == {str(event.pk)}  # the same event id each time
        assert [r.headers["Loupe-Delivery-Attempt"] for r in requests] == ["1", "2", "3"]
        delivery = only_delivery()
        assert (delivery.state, delivery.attempts) == (Delivery.State.DELIVERED, 3)
        assert [entry["status"] for entry in delivery.log] == [200, 503, 500]  # newest first
        assert delivery.log[1]["response"] == "receiver says no"

    def test_it_retries_after_a_timeout(self, project, receiver, settings, django_capture_on_commit_callbacks):
        settings.LOUPE_WEBHOOK_TIMEOUT = 0.3
        receiver.script = [("sleep", 1.0, 200), 200]
        deliveries.create_endpoint(project=project, url=receiver.url())
        emit(project, django_capture_on_commit_callbacks)
        delivery = only_delivery()
        assert (delivery.state, delivery.attempts) == (Delivery.State.DELIVERED, 2)
        assert "timed out" in delivery.log[1]["error"].lower()

    def test_it_gives_up_after_the_last_attempt_and_keeps_why(self, project, receiver, settings,
                                                             django_capture_on_commit_callbacks):
        settings.LOUPE_WEBHOOK_MAX_ATTEMPTS = 3
        receiver.script = [500] * 5
        deliveries.create_endpoint(project=project, url=receiver.url())
        emit(project, django_capture_on_commit_callbacks)
        delivery = only_delivery()
        assert (delivery.state, delivery.attempts, delivery.last_error) == (Delivery.State.FAILED, 3, "HTTP 500")
        assert len(receiver.received) == 3

    def test_backoff_grows_exponentially_up_to_the_maximum(self, settings):
        settings.LOUPE_WEBHOOK_BACKOFF_SECONDS, settings.LOUPE_WEBHOOK_BACKOFF_MAX_SECONDS = 10, 60
        assert 5 <= deliveries.backoff(1) <= 10 and 20 <= deliveries.backoff(3) <= 40
        assert 30 <= deliveries.backoff(9) <= 60

    def test_redirects_are_not_followed(self, project, receiver, settings, django_capture_on_commit_callbacks):
        settings.LOUPE_WEBHOOK_MAX_ATTEMPTS = 1
        receiver.script = [302]
        deliveries.create_endpoint(project=project, url=receiver.url())
        emit(project, django_capture_on_commit_callbacks)
        assert "redirects are not followed" in only_delivery().last_error


def fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """Answer getaddrinfo for test host names (each call pops the next answer when several)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class OutboundAddressTests:
    @pytest.mark.parametrize("url", ["https://127.0.0.1/x", "https://10.1.2.3/x", "https://169.254.169.254/latest",
                                     "https://[::1]/x", "https://192.168.0.10/", "https://[::ffff:10.0.0.1]/",
                                     "https://172.16.5.4/", "https://[fd00::1]/", "https://100.64.0.1/"])
    def test_private_loopback_and_link_local_addresses_are_refused(self, project, url):
        with pytest.raises(outbound.Refused):
            deliveries.create_endpoint(project=project, url=url)

    def test_plain_http_is_refused_unless_the_installation_allows_it(self, project):
        with pytest.raises(outbound.Refused, match="https"):
            deliveries.create_endpoint(project=project, url="http://hooks.example.com/x")

    def test_nothing_is_sent_to_127_0_0_1_once_it_is_no_longer_allowed(self, project, receiver, settings,
                                                                      django_capture_on_commit_callbacks):
        deliveries.create_endpoint(project=project, url=receiver.url())
        settings.LOUPE_WEBHOOK_ALLOWED_NETWORKS = []
        emit(project, django_capture_on_commit_callbacks)
        delivery = only_delivery()
        assert delivery.state == Delivery.State.FAILED and delivery.attempts == 1  # refused: no retries
        assert "127.0.0.1" in delivery.last_error
        assert receiver.received == []

    def test_a_name_that_resolves_to_10_x_is_refused_before_connecting(self, project, receiver, monkeypatch,
                                                                      django_capture_on_commit_callbacks):
        fake_dns(monkeypatch, {"hooks.example.test": ["10.0.0.7"]})
        deliveries.create_endpoint(project=project, url=receiver.url(host="hooks.example.test"))
        emit(project, django_capture_on_commit_callbacks)
        assert "10.0.0.7" in only_delivery().last_error
        assert only_delivery().state == Delivery.State.FAILED

    def test_the_connection_goes_to_the_checked_address_even_if_dns_changes(self, project, receiver, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
        # DNS rebinding: the first answer passes the check, later answers point inside.
        fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1", "10.0.0.7"]})
        deliveries.create_endpoint(project=project, url=receiver.url(host="hooks.example.test"))
        emit(project, django_capture_on_commit_callbacks)
        (request,) = receiver.wait_for(1)
        assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
        assert only_delivery().state == Delivery.State.DELIVERED

    def test_https_to_the_checked_address_verifies_the_certificate_for_the_host_name(
            self, project, tls_receiver, monkeypatch, django_capture_on_commit_callbacks):
        fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
        good = deliveries.create_endpoint(project=project, url=tls_receiver.url(host="hooks.example.test"))
        wrong = deliveries.create_endpoint(project=project, url=tls_receiver.url(host="other.example.test"))
        emit(project, django_capture_on_commit_callbacks)
        assert Delivery.objects.get(endpoint=good).state == Delivery.State.DELIVERED
        mismatch = Delivery.objects.get(endpoint=wrong)
        assert mismatch.state != Delivery.State.DELIVERED and "doesn't match" in mismatch.last_error
        assert len(tls_receiver.received) == 1


class OutboxTests:
    def test_an_event_is_kept_when_the_broker_is_down_and_delivered_by_the_sweeper(
            self, project, receiver, monkeypatch, django_capture_on_commit_callbacks):
        deliveries.create_endpoint(project=project, url=receiver.url())

        def broker_down(*args, **kwargs):
            raise ConnectionError("broker unreachable")

        with monkeypatch.context() as patch:
            patch.setattr(tasks.deliver, "apply_async", broker_down)
            emit(project, django_capture_on_commit_callbacks)
        assert only_delivery().state == Delivery.State.PENDING and receiver.received == []
        Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
        tasks.sweep()
        assert only_delivery().state == Delivery.State.DELIVERED and len(receiver.received) == 1

    def test_an_event_whose_dispatch_could_not_be_queued_is_dispatched_by_the_sweeper(
            self, project, receiver, monkeypatch, django_capture_on_commit_callbacks):
        deliveries.create_endpoint(project=project, url=receiver.url())

        def broker_down(*args, **kwargs):
            raise ConnectionError("broker unreachable")

        with monkeypatch.context() as patch:
            patch.setattr(tasks.dispatch_event, "delay", broker_down)
            event = emit(project, django_capture_on_commit_callbacks)  # the settling request goes on
        assert not Delivery.objects.exists() and Event.objects.get().dispatched_at is None
        Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(minutes=5))
        tasks.sweep()
        assert only_delivery().state == Delivery.State.DELIVERED and len(receiver.received) == 1

    def test_an_event_whose_consumer_never_ran_is_dispatched_by_the_sweeper(self, project, receiver):
        deliveries.create_endpoint(project=project, url=receiver.url())
        with transaction.atomic():  # committed, but the after-commit hook is not run (the process "died")
            event = events.record_event(project_id=project.pk, type=Event.Type.RUN_PROMOTED, data={})
        assert not Delivery.objects.exists()
        Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(minutes=5))
        tasks.sweep()
        tasks.sweep()  # twice: still one delivery
        assert only_delivery().state == Delivery.State.DELIVERED and len(receiver.received) == 1

    def test_an_event_rolled_back_with_its_transaction_is_never_sent(self, project, receiver):
        deliveries.create_endpoint(project=project, url=receiver.url())
        with pytest.raises(RuntimeError), transaction.atomic():
            events.record_event(project_id=project.pk, type=Event.Type.RUN_PROMOTED, data={})
            raise RuntimeError("the settlement failed")
        assert not Event.objects.exists()

    def test_each_endpoint_gets_one_delivery_per_event_and_only_the_types_it_wants(
            self, project, receiver, django_capture_on_commit_callbacks):
        everything = deliveries.create_endpoint(project=project, url=receiver.url())
        items_only = deliveries.create_endpoint(project=project, url=receiver.url(path="/items"),
                                                event_types=["item.settled"])
        Endpoint.objects.create(project=project, url=receiver.url(path="/off"), is_active=False)
        event = emit(project, django_capture_on_commit_callbacks)
        tasks.handle_event(str(event.pk))  # a duplicate hand-over adds nothing
        assert list(Delivery.objects.values_list("endpoint", flat=True)) == [everything.pk]
        assert items_only.deliveries.count() == 0

    def test_a_test_event_goes_to_one_endpoint(self, project, receiver, django_capture_on_commit_callbacks):
        endpoint = deliveries.create_endpoint(project=project, url=receiver.url())
        deliveries.create_endpoint(project=project, url=receiver.url(path="/other"))
        with django_capture_on_commit_callbacks(execute=True):
            delivery = deliveries.send_test_event(endpoint=endpoint, user=make_user("bob"))
            tasks.queue_deliveries([delivery.pk])
        (request,) = receiver.wait_for(1)
        assert json.loads(request.body)["type"] == "ping" and request.path == "/hooks/loupe"


def test_old_finished_events_are_forgotten_and_pending_ones_kept(project, settings):
    settings.LOUPE_EVENT_RETENTION_DAYS = 30
    endpoint = Endpoint.objects.create(project=project, url="https://hooks.example.com/x")
    old = timezone.now() - timedelta(days=31)
    done, pending, recent = (Event.objects.create(project=project, type=Event.Type.PING, data={},
                                                  dispatched_at=timezone.now()) for _ in range(3))
    Event.objects.filter(pk__in=[done.pk, pending.pk]).update(created_at=old)
    Delivery.objects.create(endpoint=endpoint, event=done, state=Delivery.State.DELIVERED)
    Delivery.objects.create(endpoint=endpoint, event=pending, state=Delivery.State.PENDING,
                            next_attempt_at=timezone.now() + timedelta(hours=1))
    tasks.sweep()
    assert set(Event.objects.values_list("pk", flat=True)) == {pending.pk, recent.pk}


class BudgetAlertTests:
    def test_a_budget_reaching_80_percent_sends_a_budget_alert_event_to_the_endpoints_that_want_it(
        self, project, receiver, django_capture_on_commit_callbacks
    ):
        from decimal import Decimal

        from classify.models import Budget, Spend
        from classify.services import budgets

        deliveries.create_endpoint(project=project, url=receiver.url(), event_types=["budget.alert"])
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.01"))
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():  # a bake-off's paid call
            budgets.record_spend(project=project, backend="rekognition", cost_usd=0.009, kind=Spend.Kind.BAKEOFF)
        (request,) = receiver.wait_for(1)
        body = json.loads(request.body)
        assert body["type"] == "budget.alert" and body["project"] == project.slug
        assert {key: body["data"]["budget"][key] for key in ("scope", "backend", "period", "level", "spent_usd")} == {
            "scope": "project", "backend": "rekognition", "period": "day", "level": 80, "spent_usd": "0.009000"}
        assert only_delivery().state == Delivery.State.DELIVERED
