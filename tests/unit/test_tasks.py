"""The kinds of task: their metrics worked out by hand, and the gate at its edges for a
metric where lower is better."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from configs import load_settings
from configs.settings import PromotionConfig
from models.evaluation import (
    BINARY_CLASSIFICATION,
    MULTICLASS_CLASSIFICATION,
    REGRESSION,
    TASKS,
    task,
)
from pipelines.promote import decide
from tests.conftest import PLATFORM_USECASE
from usecases import load
from usecases.contract import Target
from usecases.project import check


def test_regression_metrics_by_hand() -> None:
    values = np.array([10.0, 20.0, 30.0, 40.0])
    predictions = np.array([12.0, 18.0, 30.0, 48.0])  # errors +2, -2, 0, +8
    metrics = REGRESSION.evaluate(values, predictions)
    assert metrics["mae"] == pytest.approx(3.0)  # (2 + 2 + 0 + 8) / 4
    assert metrics["rmse"] == pytest.approx(np.sqrt((4 + 4 + 0 + 64) / 4))
    assert metrics["median_absolute_error"] == pytest.approx(2.0)
    # 1 - residual sum of squares (72) / total sum of squares around the mean 25 (500)
    assert metrics["r2"] == pytest.approx(1 - 72 / 500)
    assert set(metrics) == set(REGRESSION.metrics)


def test_multiclass_metrics_by_hand() -> None:
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # 0: right
            [0.1, 0.8, 0.1],  # 1: right
            [0.5, 0.1, 0.4],  # 2: taken for 0
            [0.1, 0.1, 0.8],  # 2: right
        ]
    )
    metrics = MULTICLASS_CLASSIFICATION.evaluate(labels, probabilities)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    # F1 per class: 0: precision 1/2, recall 1 -> 2/3; 1: 1; 2: precision 1, recall 1/2 -> 2/3
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.4, 0.8])))
    assert set(metrics) == set(MULTICLASS_CLASSIFICATION.metrics)


def test_each_task_names_a_direction_and_a_default_for_the_gate() -> None:
    for kind, each in TASKS.items():
        assert task(kind) is each
        assert each.primary_metric in each.metrics
        assert each.lower_is_better <= set(each.metrics)
    assert "roc_auc" not in BINARY_CLASSIFICATION.lower_is_better
    with pytest.raises(ValueError, match="unknown task 'ranking': one of binary, multiclass"):
        task("ranking")


MAE_RULES = PromotionConfig(maximum={"mae": 12.0}, primary_metric="mae", min_improvement=0.1)


def test_an_mae_exactly_on_its_bound_passes_and_just_above_it_does_not() -> None:
    assert decide({"mae": 12.0}, None, MAE_RULES, REGRESSION).promote
    refused = decide({"mae": 12.000001}, None, MAE_RULES, REGRESSION)
    assert not refused.promote
    assert refused.reason == "mae 12.0000 is above the maximum 12.0"


def test_an_mae_improvement_exactly_equal_to_the_margin_promotes() -> None:
    champion = {"mae": 10.0}
    exact = decide({"mae": 9.9}, champion, MAE_RULES, REGRESSION)  # 0.1 lower: better by 0.1
    assert exact.promote, exact.reason
    assert "+0.1000" in exact.reason
    short = decide({"mae": 9.900001}, champion, MAE_RULES, REGRESSION)
    assert not short.promote
    worse = decide({"mae": 10.2}, champion, MAE_RULES, REGRESSION)  # higher MAE is worse
    assert not worse.promote and "-0.2000" in worse.reason


def _target_problems(target: Target) -> list[str]:
    settings = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    usecase = replace(load(PLATFORM_USECASE), target=target)
    return [str(p) for p in check(settings, usecase, resolve_references=False)]


def test_a_target_is_checked_when_the_use_case_loads() -> None:
    code = f"usecases/{PLATFORM_USECASE}/__init__.py"
    assert _target_problems(Target()) == []
    assert _target_problems(Target("ranking")) == [
        f"{code}: target.kind: 'ranking': one of binary, multiclass, regression"
    ]
    assert f"{code}: target.unit: a regression target says its unit" in _target_problems(
        Target("regression")
    )
    assert (
        f"{code}: target.classes: a multiclass target names 3 classes or more"
        in _target_problems(Target("multiclass", classes=("yes", "no")))
    )
    # the gate's rules are checked against the target's task: roc_auc is no regression metric
    problems = _target_problems(Target("regression", unit="mm"))
    assert any(
        "promotion.primary_metric: 'roc_auc' is not a metric of regression" in p for p in problems
    )
    # the response follows the target: a regression has no decision, a class target names one
    assert (
        f"{code}: outcome.decision_field: a regression answers a value, with no decision: leave "
        "decision_field out" in problems
    )
    assert f"{code}: outcome.positive: only a yes/no target has a positive answer" in problems
