"""The learning curve of the local trained head: measurement code for bench/learning_curve.py and
its test, built from the product's own training steps (not part of the app)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classify.backends.local import fit_head
from classify.retrain.evaluation import classification_metrics, evaluate_head, head_predictions, stratified_split


def accepted_at(thresholds: dict[str, float | None], predicted: Sequence[str], scores: Sequence[float]) -> list[int]:
    """Indices a set of per-class thresholds auto-accepts (a class without a threshold never does)."""
    return [i for i, (name, score) in enumerate(zip(predicted, scores, strict=True))
            if thresholds.get(name) is not None and score >= thresholds[name]]


def learning_curve(embeddings: np.ndarray, labels: Sequence[str], *, ks: Sequence[int], pool_per_class: int,
                   target_precision: float, seed: int = 0) -> list[dict]:
    """What the local trained head achieves after K human labels per class, for each K.

    Per class, ``pool_per_class`` examples are set aside once as never-labelled items to measure
    on; the K labels are drawn from the rest (the same seed, so a larger K adds to a smaller one).
    The K labels go through the product's own path: stratified split, head fitted on the train
    part, thresholds suggested on the test part. On the pool: accuracy; the share auto-accepted at
    those suggested thresholds and its real precision; and the share that could be auto-accepted
    at ``target_precision`` with per-class thresholds chosen on the pool itself (in hindsight).
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pool, reserve = [], {}
    for name in sorted(set(labels)):
        indices = rng.permutation(np.flatnonzero(y == name))
        pool.extend(indices[:pool_per_class])
        reserve[name] = indices[pool_per_class:]
    pool = np.asarray(sorted(pool))
    rows = []
    for k in ks:
        chosen = np.concatenate([reserve[name][:k] for name in sorted(reserve)])
        keys = [str(i) for i in chosen]
        train, test = stratified_split(keys, list(y[chosen]), seed=seed)
        fit = fit_head(embeddings[chosen[train]], list(y[chosen[train]]), seed=seed)
        suggested = evaluate_head(fit.head, embeddings[chosen[test]], list(y[chosen[test]]),
                                  target_precision=target_precision)["thresholds"] if test else {}
        predicted, scores = head_predictions(fit.head, embeddings[pool])
        truths = list(y[pool])
        accepted = accepted_at(suggested, predicted, scores)
        oracle = classification_metrics(truths, predicted, scores, target_precision=target_precision)
        rows.append({
            "k": k, "labels": len(chosen), "pool": len(pool),
            "accuracy": sum(p == t for p, t in zip(predicted, truths, strict=True)) / len(pool),
            "auto_accept_share": len(accepted) / len(pool),
            "auto_accept_precision": (sum(predicted[i] == truths[i] for i in accepted) / len(accepted)) if accepted else None,
            "oracle_share": oracle["auto_accept_share"],
        })
    return rows
