"""clients/loupe_client.py against a live Loupe, and the copy-paste examples of
docs/integrations.md run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from django.db import transaction

from classify import events
from classify.auth import issue_token
from classify.models import Event
from integrations import deliveries
from tests.base import make_colour_project, make_review_item, make_user, solid_image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients"))
from loupe_client import InvalidSignature, LoupeClient, LoupeError, verify_webhook  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def doc_example(name: str) -> str:
    """The python block of docs/integrations.md that starts with ``# example: <name>``."""
    text = (ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    return block


@pytest.fixture
def pets(live_server):
    admin = make_user("ada")
    project = make_colour_project("pets", admin=admin)
    return project, LoupeClient(live_server.url, token=issue_token(admin), timeout=10)


def test_upload_poll_claim_and_decide(pets):
    project, client = pets
    item = client.upload("pets", solid_image((250, 5, 5)), filename="red.png")
    assert item["filename"] == "red.png"
    done = client.wait_for_item(item["id"], timeout=20, interval=0.1)
    assert (done["status"], done["label"]) == ("auto_accepted", "red")
    assert client.items("pets", status="auto_accepted")["items"][0]["id"] == item["id"]
    assert client.claim("pets") is None
    make_review_item(project, {"red": 0.5, "green": 0.3, "blue": 0.1, "unknown": 0.1})
    claim = client.claim("pets")
    decided = client.decide(claim["lease"]["token"], ["green"], seconds_spent=1.2)
    assert decided["status"] == "reviewed" and decided["labels"] == ["green"]
    with pytest.raises(LoupeError) as error:
        client.decide(claim["lease"]["token"], ["green"])
    assert error.value.status == 409
    assert client.stats("pets")["remaining"] == 0
    assert client.schema()["openapi"].startswith("3.1")


def test_errors_carry_the_status_and_the_message(pets, live_server):
    _, client = pets
    with pytest.raises(LoupeError) as error:
        client.upload("pets", b"not an image", filename="x.png")
    assert error.value.status == 400 and "image" in error.value.message.lower()
    with pytest.raises(LoupeError) as error:
        LoupeClient(live_server.url, token="wrong").item(1)
    assert error.value.status == 401


def test_the_client_example_in_the_docs_runs_as_written(pets, live_server, monkeypatch, tmp_path):
    project, client = pets
    make_review_item(project, {"red": 0.5, "green": 0.3, "blue": 0.1, "unknown": 0.1})
    (tmp_path / "cat.jpg").write_bytes(solid_image((5, 5, 250), fmt="JPEG"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOUPE_URL", live_server.url)
    monkeypatch.setenv("LOUPE_TOKEN", client.token)
    namespace: dict = {}
    exec(compile(doc_example("client"), "docs/integrations.md", "exec"), namespace)
    assert namespace["item"]["status"] == "auto_accepted" and namespace["item"]["label"] == "blue"
    assert namespace["result"]["status"] == "reviewed"


def test_the_webhook_receiver_example_verifies_real_deliveries(receiver, monkeypatch):
    project = make_colour_project(admin=make_user("ada"))
    endpoint = deliveries.create_endpoint(project=project, url=receiver.url())
    with transaction.atomic():
        events.record_event(project_id=project.pk, type=Event.Type.RUN_PROMOTED, data={"training_run": {"id": 1}})
    from integrations.tasks import handle_event

    handle_event(str(Event.objects.get().pk))
    (request,) = receiver.wait_for(1)
    monkeypatch.setenv("LOUPE_WEBHOOK_SECRET", endpoint.secret)
    namespace: dict = {}
    exec(compile(doc_example("webhook receiver"), "docs/integrations.md", "exec"), namespace)
    handle = namespace["handle_webhook"]
    assert handle(request.body, request.headers) == 200
    assert namespace["handled"] == {str(Event.objects.get().pk)}
    assert handle(request.body, request.headers) == 200 and len(namespace["handled"]) == 1  # a repeat
    assert handle(request.body.replace(b"promoted", b"demoted"), request.headers) == 400
    assert handle(request.body, {}) == 400


def test_verify_webhook_refuses_a_replay_and_a_wrong_secret():
    from integrations import signing

    body = b'{"id": "e1", "type": "ping"}'
    header = signing.sign("whsec_x", body, timestamp=1_000_000)
    assert verify_webhook("whsec_x", body, header, now=1_000_100)["id"] == "e1"
    with pytest.raises(InvalidSignature):
        verify_webhook("whsec_x", body, header, now=1_000_000 + 301)
    with pytest.raises(InvalidSignature):
        verify_webhook("whsec_y", body, header, now=1_000_100)


