"""The local backend on real photographs (scikit-image's samples), zero-shot and trained."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from classify.backends import BackendError, ClassSpec, ModelArtifact, get_backend
from classify.backends.local import (
    EMBEDDING_DIM,
    TrainedHead,
    embed_and_probabilities,
    fit_head,
    suggest_imagenet_classes,
)
from classify.models import Exemplar, Item, Label, Membership, ModelVersion, Project
from classify.retrain import runs
from classify.services import intake, projects
from tests.base import label_directly, make_user, photo_bytes

CLASSES = [
    ClassSpec("cat", mapping=("tabby, tabby cat", "tiger cat", "Egyptian cat")),
    ClassSpec("coffee", mapping=("espresso", "cup", "coffee mug")),
    ClassSpec("unknown", is_unknown=True),
]
CROPS = [(0, 0, 1, 1), (0.1, 0.1, 0.9, 0.9), (0, 0, 0.8, 0.8), (0.2, 0.2, 1, 1), (0.1, 0, 1, 0.9),
         (0, 0.1, 0.9, 1), (0.15, 0.05, 0.95, 0.85), (0.05, 0.15, 0.85, 0.95)]


def image(name: str, **kwargs) -> Image.Image:
    return Image.open(io.BytesIO(photo_bytes(name, **kwargs))).convert("RGB")


class ZeroShotTests:
    def test_it_recognises_real_photos(self):
        backend = get_backend("local", classes=CLASSES, config={"mode": "zero_shot"})
        cat = backend.classify(image("chelsea")).scores
        coffee = backend.classify(image("coffee")).scores
        assert max(cat, key=cat.get) == "cat" and cat["cat"] > 0.8
        assert max(coffee, key=coffee.get) == "coffee" and coffee["coffee"] > 0.8
        assert sum(cat.values()) == pytest.approx(1.0, abs=1e-4)

    def test_what_maps_to_no_class_scores_as_unknown(self):
        backend = get_backend("local", classes=CLASSES, config={})
        scores = backend.classify(image("rocket")).scores
        assert max(scores, key=scores.get) == "unknown" and scores["unknown"] > 0.9

    def test_it_returns_the_embedding_and_a_version_that_follows_the_mapping(self):
        first = get_backend("local", classes=CLASSES, config={})
        other = get_backend("local", classes=[CLASSES[0], ClassSpec("coffee", mapping=("espresso",)), CLASSES[2]],
                            config={})
        result = first.classify(image("coffee"))
        assert np.frombuffer(result.embedding, dtype=np.float32).shape == (EMBEDDING_DIM,)
        assert first.model_version.startswith("efficientnet-lite0-imagenet/zero-shot:")
        assert first.model_version != other.model_version

    def test_a_mapping_to_a_name_imagenet_lacks_is_a_clear_error(self):
        with pytest.raises(BackendError, match="not ImageNet class names: kitty") as error:
            get_backend("local", classes=[ClassSpec("cat", mapping=("kitty",)), CLASSES[2]], config={})
        assert error.value.retryable is False

    def test_an_unknown_mode_is_a_clear_error(self):
        with pytest.raises(BackendError, match="mode must be one of"):
            get_backend("local", classes=CLASSES, config={"mode": "magic"})

    def test_a_batch_scores_each_image_as_it_would_alone_in_one_forward_pass(self, monkeypatch):
        from classify.backends import classify_batch, local

        backend = get_backend("local", classes=CLASSES, config={})
        photos = [image("chelsea"), image("coffee"), image("rocket")]
        alone = [backend.classify(photo) for photo in photos]
        passes = []
        real = local.embed_and_probabilities
        monkeypatch.setattr(local, "embed_and_probabilities", lambda images: passes.append(len(images)) or real(images))
        together = classify_batch(backend, photos)
        assert passes == [3]
        for single, batched in zip(alone, together, strict=True):
            assert batched.scores == pytest.approx(single.scores, abs=1e-4)
            assert np.allclose(np.frombuffer(batched.embedding, np.float32), np.frombuffer(single.embedding, np.float32),
                               atol=1e-4)

    def test_on_the_cpu_the_model_runs_image_by_image_with_the_same_results(self, monkeypatch):
        """Passes of CPU_FORWARD_BATCH images on the CPU (faster per image there than one pass over
        the batch: docs/benchmarks.md), each image scored as a single pass over all would."""
        from classify.backends import local

        photos = [image("chelsea"), image("coffee"), image("rocket")]
        passes = []
        real = local._forward
        monkeypatch.setattr(local, "_forward", lambda images: passes.append(len(images)) or real(images))
        embeddings, probabilities = local.embed_and_probabilities(photos)
        assert passes == [1, 1, 1] and embeddings.shape == (3, EMBEDDING_DIM) and probabilities.shape == (3, 1000)
        one_pass_embeddings, one_pass_probabilities = real(photos)
        assert np.allclose(embeddings, one_pass_embeddings, atol=1e-4)
        assert np.allclose(probabilities, one_pass_probabilities, atol=1e-6)
        monkeypatch.setattr(local, "CPU_FORWARD_BATCH", 2)
        passes.clear()
        local.embed_and_probabilities(photos)
        assert passes == [2, 1]

    def test_the_torch_device_setting_picks_the_cpu_here_and_refuses_missing_cuda(self, settings):
        import torch

        from classify.backends import local

        for value, expected in (("auto", "cuda" if torch.cuda.is_available() else "cpu"), ("cpu", "cpu")):
            settings.LOUPE_TORCH_DEVICE = value
            local.device.cache_clear()
            assert local.device() == expected
        if not torch.cuda.is_available():
            settings.LOUPE_TORCH_DEVICE = "cuda"
            local.device.cache_clear()
            with pytest.raises(BackendError, match="no CUDA device") as error:
                local.device()
            assert error.value.retryable is False
        settings.LOUPE_TORCH_DEVICE = "tpu"
        local.device.cache_clear()
        with pytest.raises(BackendError, match="auto, cpu, cuda"):
            local.device()
        local.device.cache_clear()

    def test_it_suggests_imagenet_classes_by_name(self):
        assert "tabby, tabby cat" in suggest_imagenet_classes("cat")
        assert suggest_imagenet_classes("espresso") == ["espresso"]  # not the espresso maker
        assert suggest_imagenet_classes("") == []


def embeddings(name: str) -> np.ndarray:
    images = [image(name, crop=crop, mirror=mirror) for crop in CROPS for mirror in (False, True)]
    return embed_and_probabilities(images)[0]


class TrainedHeadTests:
    def test_a_fitted_head_separates_two_photos_crops_and_survives_serialisation(self):
        cats, cups = embeddings("chelsea"), embeddings("coffee")
        fit = fit_head(np.vstack([cats, cups]), ["cat"] * len(cats) + ["coffee"] * len(cups))
        assert fit.held_out_accuracy == 1.0 and fit.n_test >= 2
        head = TrainedHead.from_bytes(fit.head.to_bytes())
        assert head.classes == ("cat", "coffee")
        backend = get_backend("local", classes=CLASSES, config={}, model=ModelArtifact("head-9", fit.head.to_bytes()))
        scores = backend.classify(image("chelsea", crop=(0.05, 0.05, 0.7, 0.95))).scores
        assert max(scores, key=scores.get) == "cat"
        assert backend.model_version == "efficientnet-lite0-imagenet/head:head-9"

    def test_it_refuses_to_fit_one_class(self):
        with pytest.raises(ValueError, match="at least two classes"):
            fit_head(np.zeros((4, EMBEDDING_DIM), np.float32), ["cat"] * 4)

    def test_trained_mode_without_a_head_sends_everything_to_review(self):
        backend = get_backend("local", classes=CLASSES, config={"mode": "trained"})
        assert backend.classify(image("chelsea")).scores["unknown"] == 1.0
        assert backend.model_version.endswith("/untrained")


@pytest.mark.django_db
class RefitTests:
    def make_project(self, refit_every: int = 0):
        project = projects.create_project(slug="pets", labels=["cat", "coffee"], backend="local")
        project.refit_every = refit_every
        project.min_examples_per_class = 3
        project.learning_mode = Project.LearningMode.APPROVAL  # automatic promotion: tests/classify/test_learning.py
        # Trained mode: the head competes with no model (the zero-shot mapping of "cat" and "coffee"
        # is as accurate on these photos, and a head no better than it is not offered).
        project.backend_config = {"mode": "trained"}
        project.save()
        return project

    def add_exemplars(self, project, name: str, photo: str, count: int) -> None:
        label = project.labels.get(name=name)
        for crop in CROPS[:count]:
            Exemplar.objects.create(label=label, image=ContentFile(photo_bytes(photo, crop=crop), name="e.jpg"))

    def test_a_trained_head_is_measured_approved_and_then_used(self, django_capture_on_commit_callbacks):
        from classify.models import TrainingRun
        from classify.retrain.runs import decide, start_local_training

        project = self.make_project()
        Project.objects.filter(pk=project.pk).update(min_f1=0.5)
        self.add_exemplars(project, "cat", "chelsea", 5)
        self.add_exemplars(project, "coffee", "coffee", 5)
        with django_capture_on_commit_callbacks(execute=True):
            run = start_local_training(project=project)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.AWAITING_DECISION, run.reason
        version = run.candidate
        assert not version.is_active and version.version == "head-1"
        assert version.held_out_accuracy == 1.0 and version.n_train == version.n_test == 10  # out of fold
        assert set(version.classes) == {"cat", "coffee"}
        assert Exemplar.objects.filter(embedding__isnull=True).count() == 0  # computed once, kept
        decide(run=run, approve=True, user=make_user("ada"))
        with django_capture_on_commit_callbacks(execute=True):
            item = intake.ingest_upload(project=project, data=photo_bytes("chelsea", mirror=True), filename="c.jpg")
        prediction = Item.objects.get(pk=item.pk).predictions.get()
        assert prediction.model_version == "efficientnet-lite0-imagenet/head:head-1"
        assert prediction.top_label == "cat"

    def test_too_few_examples_start_no_training(self):
        project = self.make_project(refit_every=1)
        self.add_exemplars(project, "cat", "chelsea", 5)
        self.add_exemplars(project, "coffee", "coffee", 2)  # below min_examples_per_class (3)
        assert runs.maybe_schedule_refit(project) is False
        assert not ModelVersion.objects.exists()

    def test_human_labels_trigger_a_background_refit(self, django_capture_on_commit_callbacks):
        project = self.make_project(refit_every=6)
        reviewer = make_user("rey")
        Membership.objects.create(project=project, user=reviewer)  # only members decide
        cat, coffee = Label.objects.get(project=project, name="cat"), Label.objects.get(project=project, name="coffee")
        items = []
        with django_capture_on_commit_callbacks(execute=True):
            for index, crop in enumerate(CROPS[:3]):
                for photo in ("chelsea", "coffee"):
                    data = photo_bytes(photo, crop=crop, mirror=bool(index % 2))
                    items.append((intake.ingest_upload(project=project, data=data, filename="x.jpg"), photo))
        Item.objects.filter(project=project).update(status=Item.Status.NEEDS_REVIEW)
        for n, (item, photo) in enumerate(items, start=1):
            with django_capture_on_commit_callbacks(execute=True):
                label_directly(item=item, labels=[cat if photo == "chelsea" else coffee], reviewer=reviewer)
            assert ModelVersion.objects.count() == (1 if n >= 6 else 0)
        version = ModelVersion.objects.get()
        assert version.human_labels_seen == 6 and not version.is_active  # a candidate, for an admin to approve
        from classify.models import TrainingRun

        run = TrainingRun.objects.get(project=project)
        assert run.candidate == version and run.state == TrainingRun.State.AWAITING_DECISION
        assert runs.maybe_schedule_refit(project) is False  # one open run at a time


def test_stored_jpegs_are_decoded_no_smaller_than_the_network_needs():
    from classify.backends import efficientnet_lite, local

    assert local.INPUT_SIDE == efficientnet_lite.RESIZE_SIZE


class EmbeddingLayoutTests:
    """Item.embedding holds the pooled 1280 the ImageNet layer reads, then the last two stages
    averaged over a 2x2 grid (docs/retraining.md)."""

    def test_the_web_process_constants_match_the_network(self):
        from classify.backends import efficientnet_lite, local

        assert local.EMBEDDING_DIM == efficientnet_lite.FEATURE_DIM == 1280 + 4 * (192 + 320)
        assert local.POOLED_DIM == efficientnet_lite.EMBEDDING_DIM

    def test_the_front_of_the_embedding_is_what_the_imagenet_layer_reads(self):
        from classify.backends import local

        embeddings, probabilities = local.embed_and_probabilities([image("chelsea"), image("coffee")])
        assert np.allclose(local.imagenet_probabilities(embeddings), probabilities, atol=1e-6)
        assert np.abs(embeddings[:, local.POOLED_DIM:]).sum() > 0  # the stage features are there

    def test_a_head_fitted_on_the_older_1280_layout_scores_todays_embeddings_as_before(self):
        from classify.backends import local

        cats, cups = embeddings("chelsea"), embeddings("coffee")
        old = fit_head(np.vstack([cats, cups])[:, :1280], ["cat"] * len(cats) + ["coffee"] * len(cups)).head
        backend = get_backend("local", classes=CLASSES, config={}, model=ModelArtifact("head-1", old.to_bytes()))
        fresh = local.embed_and_probabilities([image("chelsea", mirror=True)])[0][0]
        from_today = backend.scores_from_embedding(fresh.tobytes()).scores
        assert from_today == pytest.approx(backend.scores_from_embedding(fresh[:1280].tobytes()).scores)
        assert from_today == pytest.approx(backend.classify(image("chelsea", mirror=True)).scores, abs=1e-4)
        assert max(from_today, key=from_today.get) == "cat"

    def test_a_head_on_todays_layout_leaves_an_older_embedding_to_the_network(self):
        cats, cups = embeddings("chelsea"), embeddings("coffee")
        new = fit_head(np.vstack([cats, cups]), ["cat"] * len(cats) + ["coffee"] * len(cups)).head
        backend = get_backend("local", classes=CLASSES, config={}, model=ModelArtifact("head-2", new.to_bytes()))
        assert backend.scores_from_embedding(cats[0][:1280].tobytes()) is None
        assert backend.scores_from_embedding(cats[0].tobytes()) is not None


@pytest.mark.django_db
def test_a_refit_re_embeds_labels_stored_in_the_older_layout_and_keeps_the_result():
    from classify.backends import local
    from classify.retrain.data import examples, unlabelled_pool

    project = projects.create_project(slug="old", labels=["cat", "coffee"], backend="local")
    label = project.labels.get(name="cat")
    exemplar = Exemplar.objects.create(label=label, image=ContentFile(photo_bytes("chelsea"), name="e.jpg"))
    current = embeddings("chelsea")[0]
    Exemplar.objects.filter(pk=exemplar.pk).update(embedding=current[:1280].tobytes())  # as an older release left it
    waiting = Item.objects.create(project=project, status=Item.Status.NEEDS_REVIEW, width=64, height=64,
                                  embedding=current[:1280].tobytes())
    data = examples(project)
    assert data.embeddings.shape == (1, local.EMBEDDING_DIM)
    exemplar.refresh_from_db()
    assert local.is_current(exemplar.embedding)
    assert np.allclose(np.frombuffer(exemplar.embedding, np.float32)[:1280], current[:1280], atol=1e-3)
    assert waiting.pk and unlabelled_pool(project).shape == (0, local.EMBEDDING_DIM)  # left out of the basis


class WhitenedHeadTests:
    """From ``WHITEN_FROM`` pictures on, the head learns in a PCA-whitened basis of the labelled and
    unlabelled pictures; the stored head folds it into one linear map of the raw embedding."""

    def data(self, n: int, seed: int = 3):
        rng = np.random.default_rng(seed)
        centres = rng.normal(0, 1, (3, 1280))
        y = rng.integers(0, 3, n)
        x = centres[y] + rng.normal(0, 3, (n, 1280)) + 40 * rng.normal(0, 1, (n, 1)) * rng.normal(0, 1, 1280)
        return x.astype(np.float32), [("a", "b", "c")[i] for i in y]

    def test_the_stored_head_scores_exactly_what_the_whitened_model_predicts(self):
        from classify.backends.local import WHITEN_FROM, _fit, _head_from, head_top

        x, y = self.data(120)
        unlabelled, _ = self.data(200, seed=4)
        fitted = _fit(x, np.asarray(y), unlabelled=unlabelled)
        assert fitted.basis is not None and fitted.basis.components.shape == (100, 1280)
        assert len(x) + len(unlabelled) >= WHITEN_FROM
        head = TrainedHead.from_bytes(_head_from(fitted).to_bytes())
        probe, _ = self.data(50, seed=5)
        top, scores = head_top(head, probe)
        expected = fitted.model.predict_proba((((probe - fitted.basis.centre) @ fitted.basis.components.T)
                                               / fitted.basis.spread - fitted.mean) / fitted.scale)
        assert top == [fitted.model.classes_[i] for i in expected.argmax(axis=1)]
        assert scores == pytest.approx(expected.max(axis=1), abs=1e-4)
        assert head.probabilities(probe[0])[top[0]] == pytest.approx(scores[0], abs=1e-4)

    def test_few_pictures_keep_the_plain_standardised_head(self):
        from classify.backends.local import WHITEN_FROM, _fit

        x, y = self.data(60)
        assert len(x[:20]) < WHITEN_FROM <= len(x)
        assert _fit(x[:20], np.asarray(y[:20])).basis is None
        assert _fit(x, np.asarray(y)).basis is not None
        assert _fit(x[:20], np.asarray(y[:20]), unlabelled=self.data(200, seed=4)[0]).basis is not None
        # a refit decides once for its fold heads and its final head: a fold of 54 whitens too
        assert _fit(x[:54], np.asarray(y[:54]), whiten=True).basis.components.shape == (27, 1280)
