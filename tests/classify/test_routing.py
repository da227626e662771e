from __future__ import annotations

import pytest

from classify.pipeline import Rule, route

RULES = {"cat": Rule(threshold=0.8, margin=0.1), "dog": Rule(threshold=0.6, margin=0.0)}


class RouteTests:
    def test_it_auto_accepts_a_confident_class(self):
        routing = route({"cat": 0.9, "dog": 0.05, "unknown": 0.05}, rules=RULES, unknown="unknown")
        assert routing.decision == "auto_accepted"
        assert (routing.top_label, routing.top_score, routing.margin) == ("cat", 0.9, 0.85)

    def test_it_sends_a_score_below_the_class_threshold_to_review(self):
        routing = route({"cat": 0.79, "dog": 0.01, "unknown": 0.2}, rules=RULES, unknown="unknown")
        assert routing.decision == "needs_review"
        assert "below its accept threshold of 80%" in routing.reason

    def test_thresholds_are_per_class(self):
        scores = {"cat": 0.05, "dog": 0.65, "unknown": 0.30}
        assert route(scores, rules=RULES, unknown="unknown").decision == "auto_accepted"

    def test_a_score_equal_to_the_threshold_is_accepted(self):
        routing = route({"cat": 0.8, "dog": 0.0, "unknown": 0.2}, rules=RULES, unknown="unknown")
        assert routing.decision == "auto_accepted"

    def test_it_requires_the_margin_over_the_runner_up(self):
        rules = {"cat": Rule(threshold=0.4, margin=0.1), "dog": Rule(threshold=0.4, margin=0.1)}
        routing = route({"cat": 0.45, "dog": 0.40, "unknown": 0.15}, rules=rules, unknown="unknown")
        assert routing.decision == "needs_review"
        assert "leads the runner-up by 5%" in routing.reason

    def test_unknown_on_top_never_auto_accepts(self):
        routing = route({"cat": 0.01, "dog": 0.01, "unknown": 0.98}, rules=RULES, unknown="unknown")
        assert routing.decision == "needs_review"
        assert routing.top_label == "unknown"

    def test_ties_go_to_the_first_listed_class(self):
        routing = route({"dog": 0.5, "cat": 0.5, "unknown": 0.0}, rules=RULES, unknown="unknown")
        assert routing.top_label == "dog"
        assert routing.decision == "needs_review"  # margin 0 < nothing required, but 0.5 < 0.6

    @pytest.mark.parametrize("threshold", [0.0, 1.0])
    def test_threshold_bounds(self, threshold):
        rules = {"cat": Rule(threshold, 0.0), "dog": Rule(threshold, 0.0)}
        routing = route({"cat": 0.99, "dog": 0.0, "unknown": 0.01}, rules=rules, unknown="unknown")
        assert routing.decision == ("auto_accepted" if threshold == 0.0 else "needs_review")
