"""Fit and evaluate, without a tracking server, Spark or a feature store: the split by date,
the threshold picked on validation rows only, the test metrics, and the refusals (a leaked
input, a split with one class)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from configs.settings import TrainingConfig
from models.evaluation import MULTICLASS_CLASSIFICATION, REGRESSION
from pipelines.fit import fit_and_evaluate, split_by_date
from pipelines.results import StageFailed
from usecases.contract import (
    Entity,
    Examples,
    Feature,
    Outcome,
    Request,
    Source,
    Target,
    UseCase,
    View,
)

# A use case reduced to what fitting reads: a label, a split column, model inputs.
TINY = UseCase(
    name="tiny",
    description="a signal and a 0/1 outcome",
    sources=(Source("things", "things.csv", {"thing_id": "string"}, monthly=False),),
    entities=(Entity("thing", "thing_id", "a thing"),),
    views=(
        View(
            "thing_signals",
            "thing",
            timedelta(days=1),
            (Feature("signal", "float", "its signal"), Feature("noise", "float", "noise")),
            "tiny.spark:signals",
            ("things",),
        ),
    ),
    examples=Examples(
        table="things",
        columns=("thing_id", "day", "hit", "seen_after"),
        row_id="thing_id",
        split_column="day",
        entity_frame=lambda frame: frame,
        labelled=lambda frame, params: frame,
        label="hit",
        never_inputs=frozenset({"seen_after"}),
    ),
    request=Request(
        item=dict,
        items_field="things",
        max_items=10,
        row=lambda item: item,
        compute=lambda params: lambda row: [0.0],
        features=(Feature("weekday", "float", "the day of the week"),),
    ),
    outcome=Outcome(
        score_field="probability_hit",
        decision_field="hit",
        question="A hit?",
        items="things",
        positive="hit",
        explanation="Hits.",
    ),
    default_source_dir=lambda: ".",
)
TRAINING = TrainingConfig.model_validate(
    {
        "split": {"validation_start": "2024-03-01", "test_start": "2024-04-01"},
        "model": {
            "family": "sklearn",
            "params": {"estimator": "sklearn.linear_model.LogisticRegression"},
        },
    }
)


@pytest.fixture(autouse=True)
def _few_explained_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the split, the threshold and the metrics: the explanations'
    summary over 20 test rows instead of 500 (a model-agnostic explainer costs one batch of
    predictions per row; `test_explanations.py` checks the values themselves)."""
    monkeypatch.setattr("pipelines.fit.EXPLAINED_ROWS", 20)


def labelled_rows(days: int = 120, per_day: int = 8, seed: int = 5) -> pd.DataFrame:
    """Rows from 2024-01-01 on: `hit` follows `signal`; `noise` and `weekday` carry nothing."""
    rng = np.random.default_rng(seed)
    rows = days * per_day
    signal = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "thing_id": [f"t{i}" for i in range(rows)],
            "day": np.repeat(pd.date_range("2024-01-01", periods=days, freq="D"), per_day),
            "weekday": rng.integers(0, 7, rows).astype(float),
            "signal": signal,
            "noise": rng.normal(size=rows),
            "hit": (signal + 0.5 * rng.normal(size=rows) > 0).astype(int),
            "seen_after": rng.normal(size=rows),
        }
    )


def test_a_model_is_fitted_on_the_past_and_measured_on_the_future() -> None:
    frame = labelled_rows()
    fitted = fit_and_evaluate(frame, TINY, TRAINING)
    assert fitted.features == ["weekday", "signal", "noise"]
    assert fitted.split.train["day"].max() < pd.Timestamp("2024-03-01")
    assert fitted.split.validation["day"].between("2024-03-01", "2024-03-31").all()
    assert fitted.split.test["day"].min() >= pd.Timestamp("2024-04-01")
    in_test = int((frame["day"] >= pd.Timestamp("2024-04-01")).sum())
    assert len(fitted.split.test) == len(fitted.test_scores) == in_test > 0
    assert fitted.test_metrics["roc_auc"] > 0.85
    assert set(fitted.test_metrics) >= {"roc_auc", "pr_auc", "brier", "precision", "recall"}
    assert fitted.importance.idxmax() == "signal"
    assert 0.0 < fitted.threshold < 1.0


def test_the_threshold_is_chosen_on_validation_rows_only() -> None:
    """Changing the test rows' labels changes the test metrics, never the threshold."""
    frame = labelled_rows()
    flipped = frame.copy()
    in_test = flipped["day"] >= pd.Timestamp("2024-04-01")
    flipped.loc[in_test, "hit"] = 1 - flipped.loc[in_test, "hit"]
    one, other = fit_and_evaluate(frame, TINY, TRAINING), fit_and_evaluate(flipped, TINY, TRAINING)
    assert one.threshold == other.threshold
    assert other.test_metrics["roc_auc"] < 0.2 < 0.8 < one.test_metrics["roc_auc"]


def test_a_fixed_threshold_is_kept() -> None:
    fixed = TRAINING.model_copy(update={"threshold": 0.3})
    assert fit_and_evaluate(labelled_rows(), TINY, fixed).threshold == 0.3


def test_an_input_known_only_afterwards_is_refused() -> None:
    leaky = replace(
        TINY,
        request=replace(TINY.request, features=(Feature("seen_after", "float", "afterwards"),)),
    )
    with pytest.raises(StageFailed, match="known only after the moment of prediction"):
        fit_and_evaluate(labelled_rows(), leaky, TRAINING)


def test_a_split_with_one_class_names_the_split_settings() -> None:
    frame = labelled_rows()
    frame.loc[frame["day"] >= pd.Timestamp("2024-04-01"), "hit"] = 0
    with pytest.raises(StageFailed, match=r"the test split is empty or has one label value only"):
        fit_and_evaluate(frame, TINY, TRAINING)


def _with_target(target: Target, labels: Any, family: str, params: dict) -> tuple:
    frame = labelled_rows().assign(hit=labels(labelled_rows()))
    usecase = replace(TINY, target=target)
    training = TRAINING.model_copy(
        update={"model": TRAINING.model.model_copy(update={"family": family, "params": params})}
    )
    return frame, usecase, training


def test_a_regression_target_is_fitted_and_measured_by_its_errors() -> None:
    frame, usecase, training = _with_target(
        Target("regression", unit="points"),
        lambda rows: 10 * rows["signal"] + 50,
        "sklearn",
        {"estimator": "sklearn.linear_model.Ridge"},
    )
    fitted = fit_and_evaluate(frame, usecase, training)
    assert fitted.threshold is None
    assert set(fitted.test_metrics) == set(REGRESSION.metrics)
    assert fitted.test_metrics["mae"] < 0.5 and fitted.test_metrics["r2"] > 0.99
    assert fitted.test_scores.shape == (len(fitted.split.test),)
    assert fitted.importance.idxmax() == "signal"


def test_a_multiclass_target_is_fitted_and_measured_by_its_classes() -> None:
    frame, usecase, training = _with_target(
        Target("multiclass", classes=("low", "middle", "high")),
        lambda rows: np.digitize(rows["signal"], [-0.5, 0.5]),
        "lightgbm",
        {"num_boost_round": 60, "min_data_in_leaf": 5},
    )
    fitted = fit_and_evaluate(frame, usecase, training)
    assert fitted.threshold is None
    assert fitted.test_scores.shape == (len(fitted.split.test), 3)
    assert set(fitted.test_metrics) == set(MULTICLASS_CLASSIFICATION.metrics)
    assert fitted.test_metrics["accuracy"] > 0.9


def rolling(**split: Any) -> Any:
    return TrainingConfig.model_validate({"split": {"kind": "rolling", **split}}).split


def test_rolling_windows_test_on_the_newest_weeks_and_learn_from_all_before() -> None:
    frame = labelled_rows(days=120)  # 2024-01-01 .. 2024-04-29 (a Monday)
    parts = split_by_date(frame, rolling(test_weeks=2, validation_weeks=3), "hit", "day")
    windows = parts.windows
    assert windows.test_to == pd.Timestamp("2024-04-29")
    assert windows.test_start == pd.Timestamp("2024-04-16")  # 14 days, the newest one included
    assert windows.validation_start == pd.Timestamp("2024-03-26")
    assert parts.test["day"].min() == windows.test_start and len(parts.test) == 14 * 8
    assert parts.validation["day"].between("2024-03-26", "2024-04-15").all()
    assert parts.train["day"].min() == pd.Timestamp("2024-01-01")  # everything before
    assert len(parts.train) + len(parts.validation) + len(parts.test) == len(frame)
    assert windows.describe() == (
        "train the first example..2024-03-25, validation 2024-03-26..2024-04-15, "
        "test 2024-04-16..2024-04-29"
    )
    # a month more of examples moves every window with it: the old test weeks are learned from
    later = split_by_date(
        labelled_rows(days=150), rolling(test_weeks=2, validation_weeks=3), "hit", "day"
    )
    assert later.windows.test_start == pd.Timestamp("2024-05-16")
    assert later.train["day"].max() > windows.test_start  # learns from the old test weeks


def test_rolling_windows_with_a_maximum_age_forget_the_oldest_examples() -> None:
    parts = split_by_date(
        labelled_rows(days=120),
        rolling(test_weeks=2, validation_weeks=3, max_train_weeks=4),
        "hit",
        "day",
    )
    assert parts.windows.train_from == pd.Timestamp("2024-02-27")
    assert parts.train["day"].min() == pd.Timestamp("2024-02-27")
    assert parts.train["day"].max() == pd.Timestamp("2024-03-25")


def test_windows_longer_than_the_data_are_refused_with_the_dates() -> None:
    with pytest.raises(StageFailed, match=r"the train split is empty .*2024-01-01\.\.2024-01-30"):
        split_by_date(
            labelled_rows(days=30), rolling(test_weeks=2, validation_weeks=3), "hit", "day"
        )
