"""Plain numbers for retraining: the deterministic stratified split, test-split metrics, and the
per-class threshold suggestions. No ORM, no Celery: every function takes lists and arrays.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

MAX_TEST_PER_CLASS = 1000  # Custom Labels' limit per label, kept for the local split too


def stratified_split(keys: Sequence[str], names: Sequence[str], *, test_share: float = 0.2, seed: int = 0,
                     max_test_per_class: int = MAX_TEST_PER_CLASS) -> tuple[list[int], list[int]]:
    """Indices of (train, test): per class, the examples whose seeded hash of ``key`` sorts first
    go to test (``test_share`` of the class, at least one when the class has two or more).

    The order of the input does not matter and adding examples moves none of the others between
    splits unless the class's test quota grows, so the same labels always split the same way.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(names):
        by_class[name].append(index)
    train, test = [], []
    for indices in by_class.values():
        ranked = sorted(indices, key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
        n_test = min(max_test_per_class, max(1, round(test_share * len(ranked)))) if len(ranked) >= 2 else 0
        test.extend(ranked[:n_test])
        train.extend(ranked[n_test:])
    return sorted(train), sorted(test)


def lowest_threshold(scores: Sequence[float], correct: Sequence[bool], *, target_precision: float) -> float | None:
    """The lowest score threshold at which the predictions scoring at least it are right at least
    ``target_precision`` of the time (Custom Labels' "assumed threshold" idea); None if none is."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    best, hits = None, 0
    ranked = [(float(scores[i]), bool(correct[i])) for i in order]
    for position, (score, right) in enumerate(ranked, start=1):
        hits += right
        tied_below = position < len(ranked) and ranked[position][0] == score
        if not tied_below and hits / position >= target_precision:
            best = score
    return None if best is None else round(best, 6)


def classification_metrics(truths: Sequence[str], predicted: Sequence[str], scores: Sequence[float], *,
                           target_precision: float) -> dict:
    """Accuracy, macro F1 (over the true classes), per-class precision/recall/F1/support, the
    suggested threshold per class, and the share (and precision) auto-accepted at those thresholds."""
    n = len(truths)
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_class": {}, "thresholds": {}}
    per_class: dict[str, dict] = {}
    for name in sorted(set(truths) | set(predicted)):
        tp = sum(p == name and t == name for p, t in zip(predicted, truths, strict=True))
        n_predicted, support = predicted.count(name), truths.count(name)
        precision = tp / n_predicted if n_predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        mine = [i for i, p in enumerate(predicted) if p == name]
        threshold = lowest_threshold([scores[i] for i in mine], [truths[i] == name for i in mine],
                                     target_precision=target_precision)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support,
                           "threshold": threshold}
    accepted = [i for i in range(n) if per_class[predicted[i]]["threshold"] is not None
                and scores[i] >= per_class[predicted[i]]["threshold"]]
    return {
        "n": n,
        "accuracy": sum(p == t for p, t in zip(predicted, truths, strict=True)) / n,
        "macro_f1": statistics.fmean(per_class[name]["f1"] for name in set(truths)),
        "per_class": per_class,
        "thresholds": {name: row["threshold"] for name, row in per_class.items()},
        "target_precision": target_precision,
        "auto_accept_share": len(accepted) / n,
        "auto_accept_precision": (sum(predicted[i] == truths[i] for i in accepted) / len(accepted)) if accepted else None,
    }


def head_predictions(head, embeddings: np.ndarray) -> tuple[list[str], list[float]]:
    """The top class and its probability for each embedding, under a ``TrainedHead``."""
    top, scores = [], []
    for vector in embeddings:
        probabilities = head.probabilities(vector)
        best = max(probabilities, key=probabilities.get)
        top.append(best)
        scores.append(float(probabilities[best]))
    return top, scores


def evaluate_head(head, embeddings: np.ndarray, truths: Sequence[str], *, target_precision: float) -> dict:
    top, scores = head_predictions(head, embeddings)
    return classification_metrics(list(truths), top, scores, target_precision=target_precision)
