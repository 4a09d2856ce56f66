"""The champion/challenger gate as a pure function of metrics and rules."""

from __future__ import annotations

import pytest

from configs.settings import PromotionConfig
from pipelines.promote import decide

RULES = PromotionConfig(
    minimum={"roc_auc": 0.65},
    maximum={"brier": 0.2},
    primary_metric="roc_auc",
    min_improvement=0.002,
)
GOOD = {"roc_auc": 0.72, "brier": 0.16}


def test_first_model_is_promoted_when_it_meets_every_bound() -> None:
    decision = decide(GOOD, None, RULES)
    assert decision.promote and "no champion yet" in decision.reason


def test_a_bound_missed_blocks_promotion_even_without_a_champion() -> None:
    decision = decide({"roc_auc": 0.64, "brier": 0.25}, None, RULES)
    assert not decision.promote
    assert decision.reasons == [
        "roc_auc 0.6400 is below the minimum 0.65",
        "brier 0.2500 is above the maximum 0.2",
    ]


def test_an_equal_model_is_not_promoted() -> None:
    assert not decide(GOOD, dict(GOOD), RULES).promote


def test_better_by_less_than_the_margin_is_not_promoted() -> None:
    decision = decide({**GOOD, "roc_auc": 0.7219}, {**GOOD, "roc_auc": 0.7200}, RULES)
    assert not decision.promote and "+0.0019" in decision.reason


def test_better_by_the_margin_is_promoted() -> None:
    assert decide({**GOOD, "roc_auc": 0.7220}, {**GOOD, "roc_auc": 0.7200}, RULES).promote


def test_lower_is_better_metrics_compare_the_other_way() -> None:
    rules = RULES.model_copy(update={"primary_metric": "brier"})
    assert decide({**GOOD, "brier": 0.150}, {**GOOD, "brier": 0.160}, rules).promote
    assert not decide({**GOOD, "brier": 0.170}, {**GOOD, "brier": 0.160}, rules).promote


# The edges, with values whose arithmetic floating point gets wrong: 0.7 - 0.05 is
# 0.6499999999999999, and 0.688 - 0.686 is 0.0019999999999998908, below a 0.002 margin by a hair.
def test_a_metric_exactly_on_its_minimum_passes() -> None:
    on_bound = 0.7 - 0.05
    assert on_bound < 0.65  # floating point alone would refuse it
    assert decide({"roc_auc": on_bound, "brier": 0.16}, None, RULES).promote


def test_a_metric_exactly_on_its_maximum_passes() -> None:
    on_bound = 0.1 + 0.1 + 0.1 - 0.1
    assert on_bound > 0.2  # floating point alone would refuse it
    assert decide({"roc_auc": 0.7, "brier": on_bound}, None, RULES).promote


def test_a_metric_just_past_its_bound_fails() -> None:
    assert not decide({"roc_auc": 0.649999, "brier": 0.16}, None, RULES).promote
    assert not decide({"roc_auc": 0.7, "brier": 0.200001}, None, RULES).promote


def test_an_improvement_exactly_equal_to_the_margin_is_promoted() -> None:
    champion, candidate = 0.686, 0.688
    assert candidate - champion < RULES.min_improvement  # floating point would refuse it
    decision = decide({**GOOD, "roc_auc": candidate}, {**GOOD, "roc_auc": champion}, RULES)
    assert decision.promote, decision.reason


def test_an_improvement_just_below_the_margin_is_not_promoted() -> None:
    decision = decide({**GOOD, "roc_auc": 0.687999}, {**GOOD, "roc_auc": 0.686}, RULES)
    assert not decision.promote


def test_a_rule_on_a_metric_the_task_does_not_have_is_refused_by_name() -> None:
    rules = PromotionConfig(minimum={"rocauc": 0.6}, primary_metric="roc_auc")
    with pytest.raises(ValueError, match="rocauc: not a metric of binary classification"):
        decide(GOOD, None, rules)
