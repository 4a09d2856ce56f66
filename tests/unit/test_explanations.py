"""Explanations add up: for every model family and task, each row's contributions plus the
base value give the model's output for that row (LightGBM: its raw score; scikit-learn: its
prediction), and the response's top contributions plus the rest give the same total."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import models
from models import BINARY, MULTICLASS, REGRESSION, TrainingData
from models.explain import summary, top

FEATURES = ["a", "b", "c", "code"]


def data(task: str, seed: int = 3) -> TrainingData:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(1200, 3)), columns=FEATURES[:3])
    frame["code"] = rng.integers(0, 4, size=len(frame)).astype("float64")
    frame.loc[rng.random(len(frame)) < 0.1, "b"] = np.nan
    signal = 1.5 * frame["a"] - frame["c"] + 0.5 * (frame["code"] == 2)
    if task == BINARY:
        labels = (signal + rng.normal(size=len(frame)) > 0).astype(int).to_numpy()
    elif task == MULTICLASS:
        labels = np.digitize(signal + rng.normal(size=len(frame)), [-1, 1])
    else:
        labels = (signal + rng.normal(scale=0.3, size=len(frame))).to_numpy()
    return TrainingData(
        frame[:900], labels[:900], frame[900:], labels[900:], ("code",), seed, task, 3
    )


PARAMS = {
    "lightgbm": {"num_boost_round": 40, "num_leaves": 7, "min_data_in_leaf": 10},
    "sklearn": {
        BINARY: {"estimator": "sklearn.linear_model.LogisticRegression"},
        MULTICLASS: {"estimator": "sklearn.linear_model.LogisticRegression"},
        REGRESSION: {"estimator": "sklearn.linear_model.Ridge"},
    },
}


@pytest.mark.parametrize("task", [BINARY, MULTICLASS, REGRESSION])
def test_tree_contributions_add_up_to_the_raw_score(task: str) -> None:
    trained = data(task)
    model = models.family("lightgbm").fit(trained, PARAMS["lightgbm"])
    rows = trained.validation.to_numpy()
    contributions = model.contributions(rows)
    raw = model.raw_scores(rows)
    if task == MULTICLASS:
        raw = raw[np.arange(len(rows)), model.predict(rows).argmax(axis=1)]
    np.testing.assert_allclose(contributions.explained(), raw, rtol=0, atol=1e-9)
    # Not trivially: the inputs do move the predictions.
    assert np.abs(contributions.values).sum(axis=1).min() > 0


@pytest.mark.parametrize("task", [BINARY, MULTICLASS, REGRESSION])
def test_model_agnostic_contributions_add_up_to_the_prediction(task: str) -> None:
    trained = data(task)
    model = models.family("sklearn").fit(trained, PARAMS["sklearn"][task])
    rows = trained.validation.head(20)
    contributions = model.contributions(rows)
    predicted = model.predict(rows)
    if task == MULTICLASS:
        predicted = predicted[np.arange(len(rows)), predicted.argmax(axis=1)]
    np.testing.assert_allclose(contributions.explained(), predicted, rtol=0, atol=1e-9)
    assert contributions.values.shape == (20, len(FEATURES))


def test_the_background_travels_with_a_saved_model(tmp_path) -> None:
    trained = data(BINARY)
    model = models.family("sklearn").fit(trained, PARAMS["sklearn"][BINARY])
    model.save(tmp_path / "m", signature=None, input_example=None, metadata={})
    loaded = models.load(tmp_path / "m")
    rows = trained.validation.head(5)
    np.testing.assert_allclose(
        loaded.contributions(rows).values, model.contributions(rows).values, atol=1e-12
    )


def test_the_top_contributions_and_the_rest_give_the_same_total() -> None:
    trained = data(BINARY)
    model = models.family("lightgbm").fit(trained, PARAMS["lightgbm"])
    rows = trained.validation.to_numpy()
    contributions = model.contributions(rows)
    raw = model.raw_scores(rows)
    for row in range(10):
        shown = top(contributions, rows, row, 2)
        assert len(shown["contributions"]) == 2
        sizes = [abs(item["contribution"]) for item in shown["contributions"]]
        assert sizes == sorted(sizes, reverse=True)
        added = shown["base"] + sum(i["contribution"] for i in shown["contributions"])
        assert added + shown["others"] == pytest.approx(raw[row], abs=1e-9)
        assert shown["total"] == pytest.approx(raw[row], abs=1e-9)


def test_the_summary_ranks_inputs_and_says_which_way_they_push() -> None:
    trained = data(BINARY)
    model = models.family("lightgbm").fit(trained, PARAMS["lightgbm"])
    rows = trained.validation
    found = summary(model.contributions(rows), rows, categorical=("code",)).set_index("feature")
    assert found["share"].sum() == pytest.approx(1.0)
    assert found["share"].idxmax() == "a"
    # More of `a` raises the chance, more of `c` lowers it; a category's codes have no order.
    assert found.loc["a", "direction"] == 1
    assert found.loc["c", "direction"] == -1
    assert found.loc["code", "direction"] == 0
