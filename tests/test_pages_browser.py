"""The project page and the docs' screenshots in headless Chromium against a live server.

Exemplars dropped on a class are checked and stored (or refused with the reason), and enlarge on
a click. The screenshots of the review screen, grid mode, the project page and the Models page, at
1440×900 and on a 390×844 phone, go to docs/img/ with LOUPE_UPDATE_SCREENSHOTS=1, otherwise to a
temporary folder (they are taken either way, so the pages they show are exercised).
"""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from classify.models import Exemplar, Item, Membership, ModelVersion, TrainingRun
from classify.services.projects import create_project
from tests.base import make_user, noisy_image, photo_bytes
from tests.test_review_browser import CHROMIUM, add_exemplars, log_in, waiting_item

if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's 'chromium' package to run the browser tests",
                allow_module_level=True)
from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMG = Path(settings.BASE_DIR) / "docs" / "img" if os.environ.get("LOUPE_UPDATE_SCREENSHOTS") else None
SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
ALL_IMAGES_LOADED = "Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)"


def drop_files(page, selector: str, files: dict[str, bytes]) -> None:
    """Drop files on an element as a person dragging them from the desktop would."""
    payload = {name: base64.b64encode(data).decode() for name, data in files.items()}
    page.evaluate("""([selector, files]) => {
        const transfer = new DataTransfer();
        for (const [name, b64] of Object.entries(files)) {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
        }
        const target = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
        }
    }""", [selector, payload])


def test_exemplars_dropped_on_a_class_are_checked_stored_and_enlarge(page, live_server):
    admin = make_user("ada", is_staff=True)
    project = create_project(slug="pets", labels=["bird", "temple"], backend="local", created_by=admin)
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    expect(page.locator("#unmapped")).to_contain_text("No ImageNet mapping for temple.")
    temple = page.locator('.class-card[data-label="temple"]')
    expect(temple.locator(".mapping")).to_contain_text("No ImageNet class matches “temple”")
    drop_files(page, '.class-card[data-label="temple"] .class-pics', {
        "front.png": noisy_image((180, 150, 90), seed=1), "side.png": noisy_image((170, 140, 80), seed=2),
        "notes.png": b"not a picture"})
    expect(temple.locator(".pic.exemplar")).to_have_count(2)
    expect(temple.locator(".exemplar-count")).to_have_text("2")
    expect(temple.locator(".pic-messages li.error")).to_contain_text(
        "notes.png: not added. The file is not an image in a supported format")
    label = project.labels.get(name="temple")
    assert Exemplar.objects.filter(label=label).count() == 2

    temple.locator(".pic.exemplar img").first.click()  # enlarge
    expect(page.locator("#lightbox")).to_be_visible()
    expect(page.locator("#lightbox img")).to_have_attribute("src", temple.locator(".pic.exemplar img").first.get_attribute("src"))
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()

    temple.locator(".pic-remove").first.click()
    expect(temple.locator(".pic.exemplar")).to_have_count(1)
    assert Exemplar.objects.filter(label=label).count() == 1
    page.reload()  # what the page shows is what is stored
    expect(page.locator('.class-card[data-label="temple"] .pic.exemplar')).to_have_count(1)


def test_the_admin_class_list_fits_a_1440_screen_and_flags_unmapped_classes(browser, live_server):
    admin = make_user("ada", is_staff=True)
    create_project(slug="sites", name="Sacred and profane sites", labels=["temple", "church", "mosque", "castle"],
                   backend="local", created_by=admin)
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/admin/classify/label/")
    expect(page.locator("#result_list")).to_contain_text("⚠ none: choose ImageNet classes or add exemplars")
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES["desktop"]["width"]
    context.close()


def test_the_new_project_form_previews_what_each_class_covers_and_creation_says_it_again(page, live_server):
    make_user("ada", is_staff=True)
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/projects/new/")
    page.fill("#id_name", "Pets")
    page.fill("#id_labels", "bird, dog, temple")
    rows = page.locator("#suggestions tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("59 ImageNet classes under bird.n.01")
    expect(rows.nth(1)).to_contain_text("118 ImageNet classes under dog.n.01")
    expect(page.locator('#suggestions tr.mapping-none[data-label="temple"]')).to_contain_text(
        "No ImageNet class matches “temple”: choose ImageNet classes for it in the admin, or add exemplars.")
    page.click("#project-form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/projects/pets/")
    expect(page.locator(".messages li.error")).to_contain_text("No ImageNet mapping for temple")
    expect(page.locator("#unmapped")).to_contain_text("No ImageNet mapping for temple.")


def test_the_new_project_page_takes_example_pictures_per_class_and_trains_the_first_head_at_once(page, live_server):
    """Arbitrary class names (no ImageNet class is called "alpha"): three pictures of each chosen on
    the creation page become exemplars, the first head trains on them at once (tasks run eagerly
    here, through the same refit check the training queue runs), and a refused file is listed."""
    make_user("ada", is_staff=True)
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/projects/new/")
    page.fill("#id_name", "Bugs")
    page.fill("#id_labels", "alpha, beta")
    expect(page.locator("#exemplar-inputs input[type=file]")).to_have_count(2)
    page.fill("#id_labels", "alpha, beta, gamma")
    inputs = page.locator("#exemplar-inputs input[type=file]")
    expect(inputs).to_have_count(3)
    crops = [(0, 0, 0.9, 0.9), (0.1, 0.1, 1, 1), (0.05, 0, 0.95, 0.95)]
    for index, photo in enumerate(("chelsea", "coffee", "rocket")):
        files = [{"name": f"{photo}-{i}.jpg", "mimeType": "image/jpeg",
                  "buffer": photo_bytes(photo, crop=crop, mirror=bool(i % 2))} for i, crop in enumerate(crops)]
        if photo == "rocket":
            files.append({"name": "notes.png", "mimeType": "image/png", "buffer": b"not a picture"})
        inputs.nth(index).set_input_files(files)
    page.click("#project-form button[type=submit]")
    progress = page.locator("#create-progress")
    expect(progress.locator("li.error")).to_contain_text(
        "gamma / notes.png: not added. The file is not an image in a supported format", timeout=120_000)
    expect(progress).to_contain_text("9 of 10 pictures added")
    from classify.models import Project

    project = Project.objects.get(slug="bugs")
    assert Exemplar.objects.filter(label__project=project).count() == 9
    run = TrainingRun.objects.get(project=project)
    assert run.state == TrainingRun.State.APPROVED, (run.reason, run.steps)
    assert ModelVersion.objects.get(project=project, is_active=True) == run.candidate
    progress.get_by_role("link", name="Go to the project").click()
    page.wait_for_url(f"{live_server.url}/projects/bugs/")
    expect(page.locator('.class-card[data-label="gamma"] .pic.exemplar')).to_have_count(3)


def test_the_new_project_page_with_pictures_shows_form_errors_and_creates_nothing(page, live_server):
    make_user("ada", is_staff=True)
    create_project(slug="bugs", labels=["x", "y"], backend="local")
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/projects/new/")
    page.fill("#id_name", "Bugs")
    page.fill("#id_labels", "alpha, beta")
    page.locator("#exemplar-inputs input[type=file]").first.set_input_files(
        [{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": photo_bytes("chelsea")}])
    page.click("#project-form button[type=submit]")
    expect(page.locator("#create-progress li.error")).to_contain_text("slug: A project with this slug exists already.")
    assert not Exemplar.objects.exists()


def test_the_models_page_shows_the_mode_the_promise_audited_precision_and_pauses_and_resumes(page, live_server):
    """The learning section as a project admin reads it: the mode and the promise, per class the
    audits since calibration (confirmed / checked, precision and its interval), the bound with
    audits, and a class the audits paused, with the reason and Resume."""
    from classify.models import Label, Prediction, ThresholdChange
    from reviewer import services as review
    from tests.classify.test_learning import add_item, calibrated

    admin = make_user("ada", is_staff=True)
    project = create_project(slug="insects", labels=["ant", "bee", "wasp"], backend="local", created_by=admin)
    Label.objects.filter(project=project).update(audit_rate=0.0)
    ant, bee = project.labels.get(name="ant"), project.labels.get(name="bee")
    calibrated(ant)  # 60 right of 60: bound 95.7%
    calibrated(bee)
    for n, (top, given) in enumerate([("ant", "ant")] * 9 + [("ant", "bee")] + [("bee", "bee")] * 20, start=1):
        item = add_item(project, None, n, truth=top, status=Item.Status.NEEDS_REVIEW, audit=True)
        Prediction.objects.create(item=item, backend="local", model_version="test", scores={top: 0.97},
                                  top_label=top, top_score=0.97, margin=0.9, latency_ms=1, thresholds={},
                                  decision="auto_accepted", reason="test")
        lease = review._lease([item], project, admin)[0]
        review.record_decision(token=str(lease.lease_token), reviewer=admin, labels=[project.labels.get(name=given)])
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/projects/{project.slug}/models/")
    section = page.locator("#learning")
    expect(section.locator("h2")).to_have_text("Learning: Automatic: promote a refit that beats the active model, apply its thresholds")
    expect(section).to_contain_text("Auto-accept promises 95.0% precision at 95% confidence")
    ant_row, bee_row = section.locator(f"#class-{ant.pk}"), section.locator(f"#class-{bee.pk}")
    expect(ant_row).to_contain_text("9 / 10 = 90.0% (65.2%–97.7%)")  # the audits' interval
    expect(ant_row).to_contain_text("≥ 93.8%")  # the bound with audits: 69 right of 70
    expect(ant_row).to_contain_text("paused 1 of 10 audited auto-accepts were wrong since calibration")
    expect(bee_row).to_contain_text("20 / 20 = 100.0%")
    expect(bee_row).to_contain_text("≥ 96.7%")
    expect(bee_row.locator("td").last).to_have_text("on")
    ant_row.get_by_role("button", name="Resume").click()
    expect(page.locator(f"#class-{ant.pk} td").last).to_have_text("on")
    assert ThresholdChange.objects.filter(project=project, kind="resume").count() == 1


# --- Screenshots for the docs ----------------------------------------------------------------


def photo_desk():
    """A project as the docs show it: five classes (one the ImageNet classes do not cover), exemplars,
    twelve photos waiting for review, a training run that failed and one approved."""
    admin = make_user("ada", is_staff=True)
    project = create_project(slug="photos", name="Photo desk", labels=["cat", "coffee", "rocket", "astronaut", "camera"],
                             backend="local", created_by=admin)
    labels = {label.name: label for label in project.labels.all()}
    photos = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "camera": "camera"}
    crops = [(0.0, 0.0, 0.6, 0.8), (0.4, 0.2, 1.0, 1.0), (0.2, 0.0, 0.8, 0.7), (0.1, 0.3, 0.7, 1.0)]
    for name, source in photos.items():
        add_exemplars(labels[name], [photo_bytes(source, crop=crop, mirror=i % 2 == 1) for i, crop in enumerate(crops)])
    version = "efficientnet-lite0-imagenet/head:head-1"
    waiting_item(project, {"cat": 0.52, "camera": 0.19, "astronaut": 0.11, "coffee": 0.07, "rocket": 0.04, "unknown": 0.07},
                 data=photo_bytes("chelsea"), order=0, filename="IMG_2231.jpg", backend="local", model_version=version)
    for i in range(11):
        cat = {"cat": 0.78 - i / 50, "coffee": 0.08, "camera": 0.06, "rocket": 0.02, "astronaut": 0.02}
        cat["unknown"] = round(1 - sum(cat.values()), 3)
        crop = (0.05 * (i % 4), 0.05 * (i % 3), 0.65 + 0.05 * (i % 4), 0.75 + 0.05 * (i % 3))
        source = "coffee" if i in (3, 8) else "chelsea"  # two the model got wrong
        waiting_item(project, cat, data=photo_bytes(source, crop=crop, mirror=i % 2 == 0), order=10 + i,
                     backend="local", model_version=version)
    Item.objects.filter(project=project).update(created_at=timezone.now() - timedelta(minutes=5))
    head = ModelVersion.objects.create(project=project, backend="local", version="head-1", artifact=b"", classes=list(labels),
                                       n_train=64, n_test=16, held_out_accuracy=0.875, f1=0.86, is_active=True,
                                       note="Training run #2; approved by ada.")
    now = timezone.now()
    failed = TrainingRun.objects.create(
        project=project, kind=TrainingRun.Kind.LOCAL, state=TrainingRun.State.FAILED, step="fit", created_by=admin,
        reason="Not enough labelled pictures to train and test a head: it needs at least two classes, and 2 or more "
               "labelled items or exemplars in every class that has any. So far: cat 1, coffee 0, rocket 0, "
               "astronaut 0, camera 0, unknown 0. Review more items or add exemplars, then retrain.",
        steps=[{"step": "fit", "status": "failed", "detail": "Not enough labelled pictures.",
                "at": (now - timedelta(hours=3)).isoformat()}],
    )
    metrics = {"accuracy": 0.875, "macro_f1": 0.86, "per_class": {
        name: {"precision": p, "recall": r, "f1": f, "support": n, "threshold": t}
        for name, p, r, f, n, t in [("cat", 0.94, 0.89, 0.91, 5, 0.71), ("coffee", 0.83, 0.83, 0.83, 3, 0.8),
                                    ("rocket", 1.0, 0.75, 0.86, 4, 0.62), ("camera", 0.75, 0.75, 0.75, 4, None)]}}
    approved = TrainingRun.objects.create(
        project=project, kind=TrainingRun.Kind.LOCAL, state=TrainingRun.State.APPROVED, step="compare", created_by=admin,
        candidate=head, metrics=metrics, decided_by=admin, decided_at=now - timedelta(minutes=30),
        steps=[{"step": "fit", "status": "done", "detail": "Trained head-1 on 64 labels, tested on 16: accuracy 87.5%, macro F1 0.860.",
                "at": (now - timedelta(minutes=42)).isoformat()},
               {"step": "compare", "status": "done", "detail": "Compared on 12 recent items.",
                "at": (now - timedelta(minutes=41)).isoformat()}])
    TrainingRun.objects.filter(pk=failed.pk).update(created_at=now - timedelta(hours=3, minutes=1))
    TrainingRun.objects.filter(pk=approved.pk).update(created_at=now - timedelta(minutes=43))
    return project, admin


def test_screenshots_of_the_review_screens_project_and_models_pages(browser, live_server, tmp_path):
    project, admin = photo_desk()
    reviewer = make_user("rey")
    Membership.objects.create(project=project, user=reviewer, role=Membership.Role.REVIEWER)
    out = IMG or tmp_path
    shots = []
    for size, viewport in SIZES.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, "ada")

        page.goto(f"{live_server.url}/review/{project.slug}/")
        page.wait_for_function("document.getElementById('review').dataset.state === 'item'")
        expect(page.locator("#rv-cands .rv-top .rv-exemplars img")).to_have_count(4)
        page.wait_for_function(ALL_IMAGES_LOADED)
        shots.append(out / f"review-{size}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

        page.goto(f"{live_server.url}/review/{project.slug}/grid/")  # leaving gives the leases back
        expect(page.locator("#grid")).to_have_attribute("data-label", "cat")
        for key in ["ArrowRight"] * 3 + ["x"] + ["ArrowRight"] * 5 + ["x", "ArrowRight"]:
            page.keyboard.press(key)
        page.wait_for_function(ALL_IMAGES_LOADED)
        shots.append(out / f"grid-{size}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

        page.goto(f"{live_server.url}/projects/{project.slug}/")
        expect(page.locator("#unmapped")).to_contain_text("No ImageNet mapping for astronaut.")
        page.wait_for_function(ALL_IMAGES_LOADED)
        shots.append(out / f"project-{size}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

        page.goto(f"{live_server.url}/projects/{project.slug}/models/")
        expect(page.locator(".training-run .alert")).to_contain_text("Training failed: Not enough labelled pictures")
        shots.append(out / f"models-{size}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        context.close()
    assert len(shots) == 8 and all(shot.stat().st_size > 10_000 for shot in shots)
