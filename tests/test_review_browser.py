"""The review screens (one at a time, grid mode) in headless Chromium against a live server.

Items are made directly in the database in ``needs_review`` with a prediction (no worker): the
screens only read what the review API hands out, and every assertion is on what was stored.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from classify.models import Exemplar, Item, Membership, Prediction
from reviewer.models import Decision
from tests.base import PASSWORD, make_colour_project, make_user

# Playwright's sync API runs an event loop in this thread; the ORM calls around it are still
# synchronous. bin/test exports this too.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's 'chromium' package to run the browser tests",
                allow_module_level=True)

pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LEASE_LOST = "This item is no longer yours to decide (the lease ran out or a colleague has it)."
# red leads, green second, blue third: keys 1, 2, 3; unknown on 0.
SCORES = {"red": 0.5, "green": 0.3, "blue": 0.15, "unknown": 0.05}


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


# --- Items straight into the review queue ----------------------------------------------------


def jpeg(rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb) + rng.integers(-25, 26, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def waiting_item(project, scores: dict[str, float], *, data: bytes, order: int, filename: str = "",
                 backend: str = "colour", model_version: str = "colour-test-1") -> Item:
    """An item in needs_review with a prediction, as routing leaves it; ``order`` sets its place
    in the margin-ordered queue (lowest first)."""
    ranked = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    (top_label, top_score), (_, second) = ranked[0], ranked[1]
    width, height = Image.open(io.BytesIO(data)).size
    reason = f"{top_label} scored {top_score:.0%}, below its accept threshold of 80%."
    item = Item(project=project, original_filename=filename or f"item-{order}.jpg", source_format="JPEG",
                sha256=hashlib.sha256(data).hexdigest(), width=width, height=height,
                status=Item.Status.NEEDS_REVIEW, status_reason=reason, top_label=top_label,
                top_score=top_score, margin=order / 1000)
    item.image.save("upload.jpg", ContentFile(data), save=False)
    item.save()
    Prediction.objects.create(
        item=item, backend=backend, model_version=model_version, scores=scores, top_label=top_label,
        top_score=top_score, margin=top_score - second, latency_ms=3.0, thresholds={},
        decision=Prediction.Decision.NEEDS_REVIEW, reason=reason,
    )
    return item


def colour_items(project, n: int, scores: dict[str, float] = SCORES, start: int = 0) -> list[Item]:
    return [waiting_item(project, scores, data=jpeg((200, 60, 50), seed=start + i), order=start + i)
            for i in range(n)]


def add_exemplars(label, images: list[bytes]) -> None:
    for data in images:
        Exemplar.objects.create(label=label, image=ContentFile(data, name="e.jpg"), sha256="x" * 64)


def eventually(check, timeout: float = 10.0):
    """Poll the database until ``check()`` is truthy (the page saves in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# --- Driving the single-item screen -----------------------------------------------------------


def review(page) -> dict:
    return page.eval_on_selector("#review", "el => ({state: el.dataset.state, item: Number(el.dataset.itemId || 0), "
                                            "seq: Number(el.dataset.seq), pending: Number(el.dataset.pending)})")


def wait_settled(page) -> dict:
    """Until the screen shows an item or the empty state (not 'loading')."""
    page.wait_for_function("document.getElementById('review').dataset.state !== 'loading'")
    return review(page)


def press(page, key: str) -> dict:
    """Press a key that moves on to another item; returns the screen after it."""
    seq = review(page)["seq"]
    page.keyboard.press(key)
    page.wait_for_function(
        "s => { const el = document.getElementById('review'); "
        "return Number(el.dataset.seq) > s || el.dataset.state === 'empty'; }", arg=seq)
    return wait_settled(page)


def open_review(page, live_server, project, username: str) -> dict:
    log_in(page, live_server.url, username)
    page.goto(f"{live_server.url}/review/{project.slug}/")
    page.wait_for_function("document.getElementById('review').dataset.state === 'item'")
    return review(page)


def label_decisions(item: Item) -> list[tuple[list[str], bool]]:
    return [(sorted(label.name for label in d.labels.all()), d.undone)
            for d in Decision.objects.filter(item=item, kind=Decision.Kind.LABEL).order_by("pk")]


# --- Tests ------------------------------------------------------------------------------------


def test_ten_items_reviewed_with_the_keyboard_only(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="keys", reviewer=reviewer)
    items = colour_items(project, 12)
    by_id = {item.pk: item for item in items}

    screen = open_review(page, live_server, project, "rey")
    expect(page.locator("#rv-cands .rv-cand")).to_have_count(4)  # red, green, blue, unknown on 0
    expect(page.locator("#rv-cands .rv-cand kbd")).to_have_text(["1", "2", "3", "0"])
    expect(page.locator("#rv-scores tr")).to_have_count(4)
    expect(page.locator("#rv-version")).to_contain_text("colour-test-1")
    expect(page.locator("#rv-reason")).to_contain_text("below its accept threshold")

    seen = []

    def act(key: str) -> dict:
        seen.append(review(page)["item"])
        return press(page, key)

    act("2")  # A: green
    act("Enter")  # B: the model's top class, red
    act("0")  # C: unknown/other
    act("s")  # D: skipped
    e = review(page)["item"]
    act("3")  # E: blue...
    screen = press(page, "z")  # ...undone: E is shown again, leased to me
    assert screen["item"] == e
    expect(page.locator("#messages")).to_contain_text("is back: decide again")
    act("1")  # E: red this time
    # F: "/" searches all classes; keys typed into the search box are not shortcuts.
    seq = review(page)["seq"]
    page.keyboard.press("/")
    expect(page.locator("#rv-search-input")).to_be_focused()
    page.keyboard.type("s")  # would skip, were it not typed into the search box
    expect(page.locator("#rv-results")).to_contain_text("No class matches.")
    page.keyboard.press("Backspace")
    page.keyboard.type("gre")
    expect(page.locator("#rv-results li")).to_have_text(["green30%"])
    assert review(page)["seq"] == seq
    act("Enter")  # F: green, picked in the search box
    expect(page.locator("#rv-search")).to_be_hidden()
    act("Enter")  # G: red
    page.keyboard.press("?")
    expect(page.locator("#rv-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#rv-help")).to_be_hidden()
    act("2")  # H: green
    act("Enter")  # I: red
    screen = act("0")  # J: unknown
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")

    a, b, c, d, e2, f, g, h, i, j = [by_id[pk] for pk in dict.fromkeys(seen)]
    assert e2.pk == e and len(seen) == 11 and len(set(seen)) == 10
    expected = {a: "green", b: "red", c: "unknown", e2: "red", f: "green", g: "red", h: "green", i: "red", j: "unknown"}
    for item, name in expected.items():
        item.refresh_from_db()
        assert (item.status, item.label.name, item.labelled_by) == (Item.Status.REVIEWED, name, reviewer), item
        assert label_decisions(item)[-1] == ([name], False)
    # The undo is a new revision: the blue decision is kept, marked undone, and superseded.
    assert label_decisions(e2) == [(["blue"], True), (["red"], False)]
    blue = Decision.objects.get(item=e2, labels__name="blue")
    undo = Decision.objects.get(item=e2, kind=Decision.Kind.UNDO)
    assert undo.supersedes == blue and undo.reviewer == reviewer
    # The skipped item waits for someone else, unleased.
    d.refresh_from_db()
    assert (d.status, d.lease_owner, d.label) == (Item.Status.NEEDS_REVIEW, None, None)
    assert list(Decision.objects.filter(item=d).values_list("kind", flat=True)) == [Decision.Kind.SKIP]
    # Time spent is measured per item from when it was shown.
    spent = Decision.objects.filter(kind=Decision.Kind.LABEL).values_list("seconds_spent", flat=True)
    assert all(s is not None and 0 <= s < 60 for s in spent)
    # The two items left: one shown, one claimed ahead; both leased to me.
    rest = Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).exclude(pk=d.pk)
    assert {item.lease_owner for item in rest} == {reviewer}
    assert screen["item"] in {item.pk for item in rest}
    expect(page.locator("#remaining")).to_have_text("3")
    expect(page.locator("#pace")).to_have_text("9")  # labels that stand today: the undone one does not count

    # Leaving the page gives the leases back at once.
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    assert eventually(lambda: not Item.objects.filter(project=project, lease_owner__isnull=False).exists())


def test_enter_accepts_the_top_class_even_when_it_is_unknown_and_the_help_says_so(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="enter", reviewer=reviewer)
    unknown_top = {"unknown": 0.9, "red": 0.05, "green": 0.03, "blue": 0.02}
    first = waiting_item(project, unknown_top, data=jpeg((90, 90, 90), seed=1), order=1)
    second = waiting_item(project, SCORES, data=jpeg((200, 60, 50), seed=2), order=2)
    third = waiting_item(project, unknown_top, data=jpeg((90, 90, 90), seed=3), order=3)

    screen = open_review(page, live_server, project, "rey")
    assert screen["item"] == first.pk
    # What Enter will store is what the button, the top row and the help say.
    expect(page.locator("#rv-accept")).to_contain_text("Accept top: unknown")
    top = page.locator("#rv-cands .rv-cand.rv-top")
    expect(top).to_have_count(1)
    expect(top).to_have_attribute("data-label", "unknown")
    expect(page.locator("#rv-cands .rv-cand").first).to_have_attribute("data-label", "unknown")  # by score
    page.keyboard.press("?")
    help_row = page.locator("#rv-help tr", has=page.locator("th", has_text="Enter"))
    expect(help_row).to_contain_text("the model's top class, unknown included: when unknown scores highest, Enter stores unknown")
    page.keyboard.press("Escape")
    press(page, "Enter")
    expect(page.locator("#rv-accept")).to_contain_text("Accept top: red")
    press(page, "Enter")
    page.click("#rv-accept")  # the button does what Enter does
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")
    assert label_decisions(first) == [(["unknown"], False)]
    assert label_decisions(second) == [(["red"], False)]
    assert label_decisions(third) == [(["unknown"], False)]


def test_a_number_key_means_the_same_class_on_every_item(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="fixed", reviewer=reviewer)  # classes red, green, blue: blue is 3
    rankings = [("blue", "red", "green"), ("red", "green", "blue"), ("green", "blue", "red")]
    items = []
    for i in range(10):
        first, second, third = rankings[i % 3]
        scores = {first: 0.6, second: 0.25, third: 0.1, "unknown": 0.05}
        items.append(waiting_item(project, scores, data=jpeg((60, 60, 200), seed=i), order=i))

    open_review(page, live_server, project, "rey")
    positions = set()
    for _ in range(10):
        rows = page.locator("#rv-cands .rv-cand")
        labels = rows.evaluate_all("rs => rs.map(r => r.dataset.label)")
        keys = rows.evaluate_all("rs => rs.map(r => r.querySelector('kbd').textContent)")
        assert dict(zip(labels, keys, strict=True)) == {"red": "1", "green": "2", "blue": "3", "unknown": "0"}
        positions.add(labels.index("blue"))
        press(page, "3")
    assert positions == {0, 1, 2}  # listed by score: blue moved, its key did not
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")
    for item in items:
        assert label_decisions(item) == [(["blue"], False)], item


def test_exemplar_pictures_are_large_enlarge_on_a_click_and_stay_fresh_for_items_claimed_ahead(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="pictures", reviewer=reviewer)
    add_exemplars(project.labels.get(name="red"), [jpeg((210, 40, 40), seed=90 + i) for i in range(2)])
    greenish = {"green": 0.5, "red": 0.3, "blue": 0.15, "unknown": 0.05}
    first, second, third = [waiting_item(project, greenish, data=jpeg((40, 190, 40), seed=i), order=i) for i in range(3)]
    screen = open_review(page, live_server, project, "rey")
    assert screen["item"] == first.pk
    red_pictures = page.locator('#rv-cands .rv-cand[data-label="red"] .rv-exemplars img')
    expect(red_pictures).to_have_count(2)
    assert red_pictures.first.evaluate("img => img.getBoundingClientRect().width") >= 96
    expect(page.locator('#rv-cands .rv-cand[data-label="green"] .rv-exemplars img')).to_have_count(0)  # none yet

    red_pictures.first.click()  # enlarges; does not pick red
    expect(page.locator("#lightbox")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()
    assert review(page)["item"] == first.pk and not Decision.objects.exists()

    # The next two items were claimed ahead, when green had no pictures: labelling the first one
    # green gives green a picture on them at once.
    assert press(page, "2")["item"] == second.pk
    green_pictures = page.locator('#rv-cands .rv-cand[data-label="green"] .rv-exemplars img')
    expect(green_pictures).to_have_count(1)
    expect(green_pictures).to_have_attribute("src", f"/items/{first.pk}/image")
    assert press(page, "2")["item"] == third.pk
    expect(green_pictures).to_have_count(2)


def test_the_last_item_leads_to_a_clear_empty_state(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="few", reviewer=reviewer)
    first, second = colour_items(project, 2)
    open_review(page, live_server, project, "rey")
    page.click("#rv-cands .rv-cand[data-key='3']")  # the mouse works too: blue
    page.click("button[data-action=skip]")
    expect(page.locator("#rv-empty")).to_be_visible()
    expect(page.locator("#rv-empty")).to_contain_text("Nothing left to review")
    # The header still counts the skipped item: the empty screen says why it is not offered.
    expect(page.locator("#remaining")).to_have_text("1")
    expect(page.locator("#rv-hidden")).to_contain_text(
        "1 item you skipped is hidden from you for an hour (back at ")
    expect(page.locator("#rv-hidden")).to_contain_text("Undo (Z) brings back your last skip now.")
    expect(page.locator("#rv-empty a.button")).to_have_attribute("href", f"/projects/{project.slug}/")
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.label.name) == (Item.Status.REVIEWED, "blue")
    assert second.status == Item.Status.NEEDS_REVIEW and second.lease_owner is None
    # Undo from the empty screen brings back what was done last: the skipped item, then the labelled one.
    page.keyboard.press("z")
    expect(page.locator("#review")).to_have_attribute("data-item-id", str(second.pk))
    expect(page.locator("#review")).to_have_attribute("data-state", "item")
    page.keyboard.press("z")
    expect(page.locator("#review")).to_have_attribute("data-item-id", str(first.pk))


def test_multi_label_toggles_and_enter_confirms(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="multi", reviewer=reviewer)
    project.multi_label = True
    project.save(update_fields=["multi_label"])
    first, second = colour_items(project, 2)
    open_review(page, live_server, project, "rey")
    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("2")
    page.keyboard.press("2")  # toggled off again
    expect(page.locator("#rv-cands .rv-cand.on")).to_have_count(2)
    expect(page.locator("#rv-selected")).to_contain_text("red, blue")
    press(page, "Enter")
    press(page, "Enter")  # nothing toggled: the model's top class
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")
    assert label_decisions(first) == [(["blue", "red"], False)]
    assert label_decisions(second) == [(["red"], False)]


def test_grid_mode_accepts_a_page_except_the_flagged_items(page, live_server):
    reviewer = make_user("rey")
    project = make_colour_project(slug="grid", reviewer=reviewer)
    reds = [waiting_item(project, {"red": 0.75 - i / 100, "green": 0.1, "blue": 0.1, "unknown": 0.05 + i / 100},
                         data=jpeg((220, 40, 40), seed=i), order=i) for i in range(8)]
    greens = [waiting_item(project, {"green": 0.6, "red": 0.2, "blue": 0.1, "unknown": 0.1},
                           data=jpeg((40, 200, 40), seed=100 + i), order=100 + i) for i in range(3)]

    log_in(page, live_server.url, "rey")
    page.goto(f"{live_server.url}/review/{project.slug}/grid/")
    grid = page.locator("#grid")
    expect(grid).to_have_attribute("data-state", "grid")
    expect(grid).to_have_attribute("data-label", "red")  # the class with most waiting items
    tiles = page.locator(".gr-tile")
    expect(tiles).to_have_count(8)
    # Best score first.
    assert [int(x) for x in tiles.evaluate_all("ts => ts.map(t => t.dataset.itemId)")] == [item.pk for item in reds]
    expect(tiles.first.locator(".gr-meta strong")).to_have_text("75%")

    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")  # flag the 2nd
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("x")  # flag the 4th
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Space")
    page.keyboard.press("Space")  # flagged and unflagged again: the 3rd stays accepted
    expect(page.locator(".gr-tile.flagged")).to_have_count(2)
    expect(page.locator("#gr-counts")).to_have_text("6 to accept as red · 2 flagged")
    flagged = {reds[1].pk, reds[3].pk}

    page.keyboard.press("Enter")
    expect(grid).to_have_attribute("data-seq", "2")  # the next page...
    expect(grid).to_have_attribute("data-label", "green")  # ...of the busiest class now
    expect(page.locator("#messages")).to_contain_text("Accepted 6 as red; 2 flagged went back to the one-at-a-time queue.")
    for item in reds:
        item.refresh_from_db()
        if item.pk in flagged:
            assert (item.status, item.lease_owner, item.label) == (Item.Status.NEEDS_REVIEW, None, None)
            assert not item.decisions.exists()
        else:
            assert (item.status, item.label.name) == (Item.Status.REVIEWED, "red")
            assert label_decisions(item) == [(["red"], False)]
    assert {item.lease_owner for item in Item.objects.filter(pk__in=[g.pk for g in greens])} == {reviewer}

    # Accept the green page: what is left of red is only what I flagged; they are not offered
    # here again and stay in the one-at-a-time queue, unleased.
    page.keyboard.press("Enter")
    expect(grid).to_have_attribute("data-state", "empty")
    expect(page.locator("#gr-empty")).to_contain_text("Nothing left to review")
    assert Item.objects.filter(pk__in=[g.pk for g in greens], status=Item.Status.REVIEWED, label__name="green").count() == 3
    assert eventually(lambda: not Item.objects.filter(pk__in=flagged, lease_owner__isnull=False).exists())
    assert Item.objects.filter(pk__in=flagged, status=Item.Status.NEEDS_REVIEW).count() == 2


def test_two_reviewers_at_once_never_see_the_same_item(new_page, live_server):
    project = make_colour_project(slug="pair")
    for name in ("ann", "bob"):
        Membership.objects.create(project=project, user=make_user(name), role=Membership.Role.REVIEWER)
    items = colour_items(project, 16)
    pages = {name: new_page() for name in ("ann", "bob")}
    for name, p in pages.items():
        open_review(p, live_server, project, name)

    shown: dict[str, list[int]] = {name: [] for name in pages}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        active = {name: review(p) for name, p in pages.items()}
        active = {name: screen for name, screen in active.items() if screen["state"] == "item"}
        if not active:
            break
        for name, screen in active.items():  # both press before either waits
            shown[name].append(screen["item"])
            pages[name].keyboard.press("Enter")
        for name, screen in active.items():
            pages[name].wait_for_function(
                "s => { const el = document.getElementById('review'); "
                "return (Number(el.dataset.seq) > s && el.dataset.state === 'item') || el.dataset.state === 'empty'; }",
                arg=screen["seq"])
    for p in pages.values():
        expect(p.locator("#review")).to_have_attribute("data-state", "empty")
        p.wait_for_function("document.getElementById('review').dataset.pending === '0'")

    ann, bob = set(shown["ann"]), set(shown["bob"])
    assert len(ann) == len(shown["ann"]) and len(bob) == len(shown["bob"])
    assert not ann & bob, "both reviewers were shown the same item"
    assert ann and bob, "one reviewer got everything: nothing ran at once"
    assert ann | bob == {item.pk for item in items}
    for item in items:
        item.refresh_from_db()
        assert item.status == Item.Status.REVIEWED
        assert Decision.objects.filter(item=item, kind=Decision.Kind.LABEL).count() == 1
        decider = Decision.objects.get(item=item).reviewer.get_username()
        assert item.pk in set(shown[decider])


def test_a_failed_save_is_shown_not_swallowed(page, live_server):
    reviewer, colleague = make_user("rey"), make_user("cole")
    project = make_colour_project(slug="stale", reviewer=reviewer)
    items = colour_items(project, 4)
    screen = open_review(page, live_server, project, "rey")
    stolen = Item.objects.get(pk=screen["item"])
    # A colleague has it now (e.g. my lease ran out while I was away and they claimed it).
    Item.objects.filter(pk=stolen.pk).update(lease_owner=colleague, lease_token=uuid.uuid4(),
                                             lease_expires_at=timezone.now() + timedelta(minutes=2))
    press(page, "1")
    error = page.locator("#messages li.error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text(f"Item #{stolen.pk}")
    expect(error).to_contain_text(LEASE_LOST)
    stolen.refresh_from_db()
    assert (stolen.status, stolen.lease_owner) == (Item.Status.NEEDS_REVIEW, colleague)
    assert not Decision.objects.filter(item=stolen).exists()

    # A network failure: the lease is still mine, so the item comes back to be decided again.
    page.locator("#messages li.error button").click()
    lost = review(page)["item"]
    page.route("**/decision/", lambda route: route.abort(), times=1)
    after = press(page, "Enter")
    expect(error).to_contain_text(f"Item #{lost}")
    expect(error).to_contain_text("network error")
    assert after["item"] != lost
    assert press(page, "s")["item"] == lost
    press(page, "2")
    page.wait_for_function("document.getElementById('review').dataset.pending === '0'")
    assert label_decisions(Item.objects.get(pk=lost)) == [(["green"], False)]
    assert len(items) == 4


def test_held_items_are_renewed_and_a_lost_one_is_announced(page, live_server):
    reviewer, colleague = make_user("rey"), make_user("cole")
    project = make_colour_project(slug="renew", reviewer=reviewer)
    project.lease_seconds = 15  # the page renews every third of that (5 s)
    project.save(update_fields=["lease_seconds"])
    colour_items(project, 4)
    screen = open_review(page, live_server, project, "rey")
    held = {item.pk: item.lease_expires_at for item in Item.objects.filter(project=project, lease_owner=reviewer)}
    assert len(held) == 3  # the one shown and two claimed ahead
    Item.objects.filter(pk=screen["item"]).update(lease_owner=colleague, lease_token=uuid.uuid4())

    expect(page.locator("#messages li.error")).to_contain_text(
        f"Item #{screen['item']} (item-0.jpg) is no longer held for you", timeout=12_000)
    renewed = {item.pk: item.lease_expires_at for item in Item.objects.filter(pk__in=held, lease_owner=reviewer)}
    assert len(renewed) == 2 and all(renewed[pk] > held[pk] for pk in renewed)
