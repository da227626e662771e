"""The default backend: EfficientNet-Lite0 on the CPU, offline, no cloud account.

Two modes (``backend_config["mode"]``):

- ``zero_shot``: each project class maps to ImageNet classes (``Label.mappings["local"]``); its
  score is the sum of their probabilities and unknown takes the rest.
- ``trained``: a logistic-regression head on the stored embeddings (the 1280-d pooled features
  and the last two stages averaged over a 2x2 grid, ``EMBEDDING_DIM``), fitted on the
  project's exemplars and human labels (``fit_full``); without one, everything goes to review.
- ``auto`` (default): the trained head when the project has activated one, else zero-shot.

The network is loaded once per worker process, on first use.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image

from .base import BackendError, ClassSpec, ModelArtifact, Scores, distribution
from .imagenet import imagenet_classes

NETWORK = "efficientnet-lite0-imagenet"
# The network's preprocess resizes the shorter side to this (efficientnet_lite.RESIZE_SIZE, kept
# here so the web process need not import torch): stored JPEGs are decoded no larger than needed.
INPUT_SIDE = 256
# What Item.embedding stores (efficientnet_lite.FEATURE_DIM, kept here for the same reason): the
# 1280-d pooled embedding the ImageNet layer reads (POOLED_DIM), then the last two stages' outputs
# averaged over a 2x2 grid (4 x (192 + 320)). Releases before it stored the 1280 alone: such a
# vector is still the exact input of a head fitted then, and a refit re-embeds it
# (classify.retrain.data). 13 KB a picture as float32.
POOLED_DIM = 1280
EMBEDDING_DIM = 3328
MODES = ("auto", "zero_shot", "trained")


@functools.cache
def _network() -> Any:
    """The network, loaded once per process (a worker child loads it on its first task), on
    the device ``LOUPE_TORCH_DEVICE`` selects."""
    import torch  # heavy: only a process that classifies loads torch

    from .efficientnet_lite import load_pretrained  # imports torch

    torch.set_num_threads(max(1, settings.LOUPE_TORCH_THREADS))
    return load_pretrained().to(device())


@functools.cache
def device() -> str:
    """``LOUPE_TORCH_DEVICE``: ``auto`` (CUDA when PyTorch sees a GPU, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``. Asking for CUDA on a machine without it is a non-retryable error,
    so a misconfigured worker sends items to review with the reason instead of looping."""
    import torch  # heavy: only a process that classifies loads torch

    wanted = settings.LOUPE_TORCH_DEVICE.strip().lower() or "auto"
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"LOUPE_TORCH_DEVICE={wanted} but PyTorch sees no CUDA device", retryable=False)
    if wanted != "cpu" and not wanted.startswith("cuda"):
        raise BackendError(f"LOUPE_TORCH_DEVICE must be auto, cpu, cuda or cuda:N, not {wanted!r}", retryable=False)
    return wanted


@functools.cache
def _imagenet_index() -> dict[str, int]:
    return {name: index for index, name in enumerate(imagenet_classes())}


# Images per forward pass on the CPU. With one torch thread a pass over several images was slower
# per image, not faster: bench/pipeline.py's model-only floor did 37 images/s one at a time, 18 in
# passes of 8 and 5 in passes of 32 (docs/benchmarks.md), as the activations of a batch outgrow the
# CPU's caches. A GPU takes a worker's whole batch in one pass.
CPU_FORWARD_BATCH = 1


def embed_and_probabilities(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """(N, ``EMBEDDING_DIM``) float32 embeddings and (N, 1000) ImageNet probabilities for RGB
    images: one forward pass over all of them on a GPU, passes of ``CPU_FORWARD_BATCH`` on the CPU."""
    step = len(images) if device().startswith("cuda") else CPU_FORWARD_BATCH
    parts = [_forward(images[start:start + step]) for start in range(0, len(images), max(1, step))]
    if not parts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32), np.zeros((0, 1000), dtype=np.float64)
    return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])


def _forward(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    import torch  # heavy: only a process that classifies loads torch

    from .efficientnet_lite import preprocess  # imports torch

    network = _network()
    batch = torch.stack([preprocess(image) for image in images]).to(device())
    with torch.inference_mode():
        embedding, logits = network.features_and_logits(batch)
        probabilities = torch.softmax(logits, dim=1)
    return embedding.cpu().numpy().astype(np.float32), probabilities.cpu().numpy().astype(np.float64)


def imagenet_probabilities(embeddings: np.ndarray) -> np.ndarray:
    """(N, 1000) ImageNet probabilities from stored embeddings: the network's last layer alone
    (on the pooled part), so a zero-shot mapping can be measured on labelled images without
    decoding them again."""
    import torch

    pooled = np.ascontiguousarray(embeddings[:, :POOLED_DIM], dtype=np.float32)
    with torch.inference_mode():
        logits = _network()._fc(torch.from_numpy(pooled))
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)


def zero_shot_top(embeddings: np.ndarray, classes: Sequence[ClassSpec]) -> tuple[list[str], list[float]]:
    """The zero-shot mapping's top class (unknown included) and its score per embedding, exactly
    as ``LocalBackend.classify`` would route them."""
    mapping = {spec.name: imagenet_indices(spec.mapping) for spec in classes if not spec.is_unknown}
    probabilities = imagenet_probabilities(embeddings) if len(embeddings) else np.zeros((0, 1000))
    top, scores = [], []
    for row in probabilities:
        scored = distribution({name: float(row[idx].sum()) for name, idx in mapping.items()}, classes)
        best = max(scored, key=scored.get)
        top.append(best)
        scores.append(scored[best])
    return top, scores


def embed(image: Image.Image) -> bytes:
    """The embedding of one image, as float32 bytes (what ``Item.embedding`` stores)."""
    return embed_and_probabilities([image])[0][0].tobytes()


def is_current(embedding: bytes | memoryview | None) -> bool:
    """Whether a stored embedding has today's layout (``EMBEDDING_DIM`` floats), not an older
    release's 1280-d one or none at all."""
    return embedding is not None and len(embedding) == EMBEDDING_DIM * 4


def imagenet_indices(names: Sequence[str]) -> list[int]:
    """ImageNet indices for class names; an unknown name is a non-retryable ``BackendError``."""
    index = _imagenet_index()
    missing = [name for name in names if name not in index]
    if missing:
        raise BackendError(f"not ImageNet class names: {', '.join(missing)}", retryable=False)
    return [index[name] for name in names]


def suggest_imagenet_classes(label_name: str, limit: int | None = None) -> list[str]:
    """The ImageNet classes a new class called ``label_name`` starts with (project creation, a
    class added in the admin): see ``imagenet.suggest`` (the WordNet hierarchy, not word matching)."""
    from .imagenet import suggest

    return list(suggest(label_name).classes[:limit])


@dataclass(frozen=True)
class TrainedHead:
    """Standardise, then multinomial logistic regression: rows of ``coef`` follow ``classes``."""

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @property
    def inputs(self) -> int:
        """How many leading floats of an embedding the head reads: a head fitted on an older
        release's 1280-d embeddings reads the same 1280 at the front of today's."""
        return int(self.mean.shape[0])

    def reads(self, embedding: bytes | memoryview) -> bool:
        """Whether a stored embedding is long enough for this head."""
        return len(embedding) >= self.inputs * 4

    def probabilities(self, embedding: np.ndarray) -> dict[str, float]:
        logits = ((embedding[: self.inputs] - self.mean) / self.scale) @ self.coef.T + self.intercept
        logits -= logits.max()
        exp = np.exp(logits)
        return dict(zip(self.classes, (exp / exp.sum()).tolist(), strict=True))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, classes=np.array(self.classes), mean=self.mean, scale=self.scale,
                 coef=self.coef, intercept=self.intercept)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedHead:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(tuple(str(name) for name in arrays["classes"]), arrays["mean"], arrays["scale"],
                       arrays["coef"], arrays["intercept"])


@functools.lru_cache(maxsize=32)
def _load_head(version: str, data: bytes) -> TrainedHead:
    return TrainedHead.from_bytes(data)


class LocalBackend:
    name = "local"
    runs_locally = True
    input_side = INPUT_SIDE

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        self.mode = config.get("mode", "auto")
        if self.mode not in MODES:
            raise BackendError(f"local backend mode must be one of {', '.join(MODES)}", retryable=False)
        self.head = _load_head(model.version, model.data) if model and self.mode != "zero_shot" else None
        self.head_version = model.version if self.head else None
        self.mapping = {spec.name: imagenet_indices(spec.mapping) for spec in self.classes if not spec.is_unknown}

    @property
    def model_version(self) -> str:
        if self.head is not None:
            return f"{NETWORK}/head:{self.head_version}"
        if self.mode == "trained":
            return f"{NETWORK}/untrained"
        digest = hashlib.sha256(json.dumps(self.mapping, sort_keys=True).encode()).hexdigest()[:10]
        return f"{NETWORK}/zero-shot:{digest}"

    def scores_from_embedding(self, embedding: bytes) -> Scores | None:
        """The trained head's scores from a stored embedding (no image decoded, no network run),
        or None when scoring needs the network (zero-shot, or an embedding older than the head)."""
        if self.head is None or not self.head.reads(embedding):
            return None
        known = self.head.probabilities(np.frombuffer(bytes(embedding), dtype=np.float32))
        return Scores(distribution(known, self.classes), self.model_version, embedding=bytes(embedding))

    def classify(self, image: Image.Image) -> Scores:
        return self.classify_batch([image])[0]

    def classify_batch(self, images: Sequence[Image.Image]) -> list[Scores]:
        """Scores for several images (a worker's batch of ready items) from one call to the model
        (``embed_and_probabilities``: one forward pass on a GPU)."""
        embeddings, probabilities = embed_and_probabilities(images)
        return [self._scores(embedding, row) for embedding, row in zip(embeddings, probabilities, strict=True)]

    def _scores(self, embedding: np.ndarray, probabilities: np.ndarray) -> Scores:
        if self.head is not None:
            known = self.head.probabilities(embedding)
        elif self.mode == "trained":
            known = {}  # no head yet: all mass on unknown, so a person decides
        else:
            known = {name: float(probabilities[idx].sum()) for name, idx in self.mapping.items()}
        return Scores(distribution(known, self.classes), self.model_version, embedding=embedding.tobytes())


@dataclass(frozen=True)
class HeadFit:
    head: TrainedHead
    n_train: int
    n_test: int
    held_out_accuracy: float | None


def fit_head(embeddings: np.ndarray, labels: Sequence[str], *, seed: int = 0) -> HeadFit:
    """Fit a trained head; hold out a stratified 20% (when every class has ≥ 2 examples) to score it.

    The reported head is refitted on all examples after the held-out measurement. A plain
    standardised head, never whitened: what ``bench/learning_curve.py`` measures (a refit's head
    is ``fit_full`` with the refit's choice, see ``classify.retrain.local``).
    """
    from sklearn.model_selection import train_test_split  # heavy: only training loads scikit-learn

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("a trained head needs examples of at least two classes")
    accuracy, n_test = None, 0
    n_holdout = max(len(classes), int(round(0.2 * len(y))))
    if counts.min() >= 2 and len(y) - n_holdout >= len(classes):
        x_train, x_test, y_train, y_test = train_test_split(
            embeddings, y, test_size=n_holdout, stratify=y, random_state=seed
        )
        accuracy = float((_fit(x_train, y_train, whiten=False).predict(x_test) == y_test).mean())
        n_test = len(y_test)
    model = _fit(embeddings, y, whiten=False)
    return HeadFit(_head_from(model), n_train=len(y) - n_test, n_test=n_test, held_out_accuracy=accuracy)


# Pictures (labelled and not) before the head learns in a whitened basis. On MNIST digits with the
# grid embedding it helped at every size tried: held-out accuracy 63.6% -> 68.5% at 30 labels, 85.7% ->
# 88.5% at 100; at 200 labels a plain head certified nothing (bench/learning_features.py).
WHITEN_FROM = 30
WHITEN_COMPONENTS = 100  # at most; at most half the pictures


class _Standardised:
    def __init__(self, mean: np.ndarray, scale: np.ndarray, model: Any, basis: _Basis | None = None) -> None:
        self.mean, self.scale, self.model, self.basis = mean, scale, model, basis

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict((_project(x, self.basis) - self.mean) / self.scale)


@dataclass(frozen=True)
class _Basis:
    """A PCA-whitened basis of the project's pictures: ``(x - centre) @ components.T / spread``."""

    centre: np.ndarray
    components: np.ndarray
    spread: np.ndarray


def _project(x: np.ndarray, basis: _Basis | None) -> np.ndarray:
    return x if basis is None else ((x - basis.centre) @ basis.components.T) / basis.spread


def should_whiten(pictures: int) -> bool:
    """Whether a refit over this many pictures (labelled and not) learns in a whitened basis."""
    return pictures >= WHITEN_FROM


def whitened_basis(pictures: np.ndarray) -> _Basis:
    """The principal directions of the project's pictures (at most ``WHITEN_COMPONENTS``, at
    most half as many as pictures), each scaled to unit variance.

    ImageNet features spread a class like handwritten digits over a few directions of large
    variance that carry little of what tells the classes apart; whitening gives the few labelled
    examples' logistic regression the directions in proportion. The basis is unsupervised (it never
    sees a label), so the pictures nobody labelled count: their geometry, never their predicted
    class (auto-accepted items never train the head). Measured on MNIST digits with the grid
    embedding and 200 labels (bench/learning_features.py, eight orders): new digits auto-accepted
    at a certified 95%, 0% with a plain head (92.2% accurate), 85.6% whitened (95.1%)."""
    from sklearn.decomposition import PCA  # heavy: only training loads scikit-learn
    from threadpoolctl import threadpool_limits

    components = min(WHITEN_COMPONENTS, len(pictures) // 2)
    with threadpool_limits(limits=1, user_api="blas"):
        pca = PCA(n_components=components, svd_solver="randomized", random_state=0).fit(pictures)
    return _Basis(pca.mean_.astype(np.float64), pca.components_.astype(np.float64),
                  np.sqrt(pca.explained_variance_).astype(np.float64) + 1e-9)


def _fit(x: np.ndarray, y: np.ndarray, *, unlabelled: np.ndarray | None = None,
         whiten: bool | None = None) -> _Standardised:
    """(Whiten,) standardise and fit. The basis is fitted on ``x`` and the ``unlabelled``
    pictures together (``whitened_basis``); ``whiten`` None decides by their number, and a refit
    decides once for its fold fits and its final fit alike (``should_whiten``), so the evidence
    comes from the same procedure as the head. One BLAS thread: on a busy machine (workers, a web
    server, the database) more threads made a 2,000-label fit 8x slower (9 s instead of 1.2 s)."""
    from sklearn.linear_model import LogisticRegression  # heavy: only training loads scikit-learn
    from threadpoolctl import threadpool_limits

    pictures = x if unlabelled is None or not len(unlabelled) else np.vstack([x, unlabelled])
    if whiten is None:
        whiten = should_whiten(len(pictures))
    basis = whitened_basis(np.asarray(pictures, dtype=np.float64)) if whiten else None
    z = _project(np.asarray(x, dtype=np.float64), basis)
    mean = z.mean(axis=0)
    scale = z.std(axis=0) + 1e-6
    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegression(C=0.5, max_iter=2000).fit((z - mean) / scale, y)
    return _Standardised(mean, scale, model, basis)


def fit_scorer(x: np.ndarray, y: list[str], *, unlabelled: np.ndarray | None = None, whiten: bool | None = None):
    """A ``calibration.Fitter``: fits a head on (x, y) and returns a predictor of the top class
    and its probability, the same numbers routing sees. Every fit starts cold: warm-starting
    fold fits from the full fit (which saw the fold) would not be out of fold. The whitened basis
    comes from this fold's labelled pictures and the unlabelled ones, never the held-out fold: a
    new upload is not in the basis either."""
    head = _head_from(_fit(x, np.asarray(y), unlabelled=unlabelled, whiten=whiten))
    return lambda rows: head_top(head, rows)


def head_top(head: TrainedHead, rows: np.ndarray) -> tuple[list[str], list[float]]:
    """Vectorised ``TrainedHead.probabilities``: the top class and its probability per row."""
    logits = ((rows[:, : head.inputs] - head.mean) / head.scale) @ head.coef.T + head.intercept
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    return [head.classes[i] for i in best], [round(float(p), 6) for p in probabilities[np.arange(len(rows)), best]]


def fit_full(embeddings: np.ndarray, labels: Sequence[str], *, unlabelled: np.ndarray | None = None,
             whiten: bool | None = None) -> TrainedHead:
    """The head on every example: what a refit activates."""
    return _head_from(_fit(embeddings, np.asarray(labels), unlabelled=unlabelled, whiten=whiten))


def _head_from(fitted: _Standardised) -> TrainedHead:
    """The stored head: a linear map of the raw embedding. A whitened basis folds into it
    (``logits = ((x - centre) / 1) @ coef.T + intercept``), so serving is unchanged."""
    model = fitted.model
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: softmax([-z/2, z/2]) equals the sigmoid of z
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    basis = fitted.basis
    if basis is None:
        return TrainedHead(tuple(str(c) for c in model.classes_), fitted.mean.astype(np.float32),
                           fitted.scale.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32))
    # u = ((x - c) P^T / s - m) / sd  =>  logits = (x - c) P^T D W^T + b - (m / sd) W^T, D = 1 / (s * sd)
    weights = coef / fitted.scale  # W / sd, per whitened direction
    folded = (weights / basis.spread) @ basis.components  # (classes, EMBEDDING_DIM)
    shift = intercept - (weights * fitted.mean).sum(axis=1)
    return TrainedHead(tuple(str(c) for c in model.classes_), basis.centre.astype(np.float32),
                       np.ones_like(basis.centre, dtype=np.float32), folded.astype(np.float32),
                       shift.astype(np.float32))
