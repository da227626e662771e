"""Calibration on synthetic scores whose true precision is known: the bound, the folds, the
thresholds, pooling, and the promise itself (fresh items auto-accepted at the calibrated
thresholds are at least as precise as the target, as often as the confidence level says)."""

from __future__ import annotations

import numpy as np
import pytest

from classify.calibration import (
    Scored,
    calibrate,
    evidence_needed,
    fold_assignment,
    frontier,
    out_of_fold,
    wilson_lower,
    wilson_upper,
)

CLASSES = ["a", "b", "c"]


def synthetic(n: int, rng: np.random.Generator, *, classes=CLASSES, quality=(1.0, 1.0, 1.0)) -> Scored:
    """Scores uniform on [0, 1]; a prediction scoring s is right with probability s ** (1 / q):
    for q = 1, precision at or above threshold t is exactly (1 + t) / 2, so 95% needs t = 0.9."""
    predicted = [classes[i] for i in rng.integers(0, len(classes), n)]
    scores = rng.uniform(0, 1, n)
    q = np.array([quality[classes.index(p)] for p in predicted])
    right = rng.uniform(0, 1, n) < scores ** (1 / q)
    truths = [p if ok else "other" for p, ok in zip(predicted, right, strict=True)]
    return Scored(predicted, [round(float(s), 6) for s in scores], truths)


class BoundTests:
    def test_the_wilson_bound_has_its_textbook_values(self):
        assert wilson_lower(20, 20) == pytest.approx(0.8808, abs=1e-4)  # z = 1.645, one-sided 95%
        assert wilson_lower(95, 100) == pytest.approx(0.9012, abs=1e-3)
        assert wilson_upper(0, 10) == pytest.approx(1 - wilson_lower(10, 10))
        assert wilson_lower(0, 0) == 0.0 and wilson_upper(0, 0) == 1.0

    def test_a_95_percent_promise_needs_about_fifty_right_answers_in_a_row(self):
        assert evidence_needed(0.95) == 52
        assert wilson_lower(52, 52) >= 0.95 > wilson_lower(51, 51)


class FoldTests:
    def test_every_example_is_scored_by_a_model_that_never_saw_it(self):
        keys = [f"k{i}" for i in range(40)]
        names = ["a", "b"] * 20
        x = np.arange(40, dtype=float).reshape(-1, 1)
        seen_by_scorer: dict[int, set[int]] = {}

        def fit(train_x, train_y):
            trained = {int(v) for v in train_x[:, 0]}

            def predict(rows):
                for v in rows[:, 0]:
                    seen_by_scorer[int(v)] = trained
                return ["a"] * len(rows), [0.5] * len(rows)
            return predict

        out_of_fold(x, names, keys, fit=fit)
        assert sorted(seen_by_scorer) == list(range(40))
        assert all(i not in trained for i, trained in seen_by_scorer.items())

    def test_folds_are_stratified_and_do_not_depend_on_input_order(self):
        keys = [f"k{i}" for i in range(50)]
        names = ["a"] * 25 + ["b"] * 25
        folds = fold_assignment(keys, names, folds=5)
        for fold in range(5):
            assert sum(1 for i in range(50) if folds[i] == fold and names[i] == "a") == 5
        reversed_folds = fold_assignment(keys[::-1], names[::-1], folds=5)
        assert list(reversed_folds[::-1]) == list(folds)

    def test_restricting_what_fold_models_learn_from_still_scores_everything(self):
        keys = [f"k{i}" for i in range(20)]
        names = ["a", "b"] * 10
        x = np.arange(20, dtype=float).reshape(-1, 1)
        trained_on: set[int] = set()

        def fit(train_x, train_y):
            trained_on.update(int(v) for v in train_x[:, 0])
            return lambda rows: (["a"] * len(rows), [0.9] * len(rows))

        scored = out_of_fold(x, names, keys, fit=fit, trainable=[i < 10 for i in range(20)])
        assert trained_on <= set(range(10)) and len(scored.predicted) == 20 and all(scored.predicted)


class CalibrateTests:
    def test_with_plenty_of_evidence_each_class_gets_its_own_threshold_above_the_true_one(self):
        # right with probability s ** 0.25: precision at or above t reaches 95% at t = 0.63
        scored = synthetic(6000, np.random.default_rng(1), quality=(4, 4, 4))
        result = calibrate(scored, classes=[*CLASSES, "unknown"], target=0.95)
        for name in CLASSES:
            row = result.classes[name]
            assert row.source == "own" and row.lower >= 0.95
            assert 0.63 <= row.threshold < 1.0
        assert "unknown" not in result.classes
        assert result.lower >= 0.95 and 0.05 < result.coverage < 0.37

    def test_the_promise_holds_on_fresh_items_at_least_as_often_as_the_confidence_level(self):
        rng = np.random.default_rng(2)
        kept, runs = 0, 200
        for _ in range(runs):
            result = calibrate(synthetic(600, rng), classes=CLASSES, target=0.9)
            fresh = synthetic(5000, rng)
            taken = [p == t for p, s, t in zip(fresh.predicted, fresh.scores, fresh.truths, strict=True)
                     if result.classes[p].threshold is not None and s >= result.classes[p].threshold]
            kept += not taken or np.mean(taken) >= 0.9
        assert kept / runs >= 0.93  # nominal 95% (measured 96.5%); the best of all thresholds without the
        # fixed sequence kept it 86% of the time, a point estimate (no bound) about half

    def test_a_point_estimate_would_not_keep_the_promise(self):
        """The reason for the bound: the lowest threshold whose *measured* precision meets the
        target overshoots on fresh items about half the time."""
        from classify.retrain.evaluation import lowest_threshold

        rng = np.random.default_rng(3)
        kept, runs = 0, 200
        for _ in range(runs):
            seen = synthetic(600, rng, classes=["a"])
            threshold = lowest_threshold(seen.scores, [p == t for p, t in zip(seen.predicted, seen.truths, strict=True)],
                                         target_precision=0.9)
            fresh = synthetic(5000, rng, classes=["a"])
            taken = [p == t for p, s, t in zip(fresh.predicted, fresh.scores, fresh.truths, strict=True)
                     if threshold is not None and s >= threshold]
            kept += not taken or np.mean(taken) >= 0.9
        assert kept / runs < 0.8

    def test_a_class_with_little_evidence_borrows_the_pooled_threshold_if_spotless(self):
        predicted = ["a"] * 100 + ["b"] * 100 + ["c"] * 5
        scores = [0.99] * 205
        truths = list(predicted)
        result = calibrate(Scored(predicted, scores, truths), classes=CLASSES, target=0.95)
        assert result.classes["a"].source == "own" and result.classes["b"].source == "own"
        assert result.classes["c"].source == "pooled" and result.classes["c"].threshold == 0.99

    def test_a_class_whose_record_above_the_pooled_threshold_shows_it_worse_stays_in_review(self):
        predicted = ["a"] * 100 + ["b"] * 100 + ["c"] * 5
        truths = ["a"] * 100 + ["b"] * 100 + ["c"] * 3 + ["a"] * 2  # 3 of 5: upper bound 86% < 95%
        result = calibrate(Scored(predicted, [0.99] * 205, truths), classes=CLASSES, target=0.95)
        assert result.classes["c"].threshold is None and result.classes["c"].source == "none"
        assert "2 of its 5 predictions above the pooled threshold were wrong" in result.classes["c"].reason

    def test_one_mistake_in_a_handful_is_not_evidence_against_a_class(self):
        """4 of 5 right is compatible with 95% (upper bound 95.4%): the class borrows the pooled
        threshold, and the bound of everything accepted still holds."""
        predicted = ["a"] * 100 + ["b"] * 100 + ["c"] * 5
        truths = ["a"] * 100 + ["b"] * 100 + ["c"] * 4 + ["a"]
        result = calibrate(Scored(predicted, [0.99] * 205, truths), classes=CLASSES, target=0.95)
        assert result.classes["c"].source == "pooled" and result.classes["c"].threshold == 0.99
        assert (result.classes["c"].accepted, result.classes["c"].correct) == (5, 4)
        assert result.lower >= 0.95

    def test_borrowing_never_breaks_the_bound_of_everything_accepted(self):
        """Many borrowing classes each one mistake short: the weakest go back to review until the
        bound of all accepted items holds again."""
        predicted = ["a"] * 100 + [f"c{i}" for i in range(12) for _ in range(5)]
        truths = ["a"] * 100 + [name if k else "a" for i in range(12) for k, name in enumerate([f"c{i}"] * 5)]
        classes = ["a"] + [f"c{i}" for i in range(12)]
        result = calibrate(Scored(predicted, [0.99] * 160, truths), classes=classes, target=0.95)
        assert result.lower >= 0.95
        assert any(row.source == "none" for row in result.classes.values())

    def test_with_too_little_evidence_everything_stays_in_review_and_says_why(self):
        scored = Scored(["a", "b", "c"] * 5, [0.99] * 15, ["a", "b", "c"] * 5)
        result = calibrate(scored, classes=CLASSES, target=0.95)
        assert result.coverage == 0 and all(row.threshold is None for row in result.classes.values())
        assert "52 right ones in a row" in result.classes["a"].reason

    def test_unknown_never_auto_accepts(self):
        scored = Scored(["unknown"] * 200, [0.99] * 200, ["unknown"] * 200)
        assert calibrate(scored, classes=["a", "unknown"], target=0.9).coverage == 0


def test_the_frontier_is_what_hindsight_allows():
    predicted = ["a"] * 10
    scores = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    truths = ["a"] * 9 + ["b"]
    assert frontier(predicted, scores, truths, target=0.9) == 1.0
    truths = ["a", "a", "b"] + ["a"] * 7
    assert frontier(predicted, scores, truths, target=0.95) == 0.2
