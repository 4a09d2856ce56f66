"""How a model's predictions become answers, per task: worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.answers import Answering, AnsweringError, fields, interval_halfwidth


def test_a_binary_answer_is_the_probability_and_the_decision_at_the_threshold() -> None:
    answering = Answering("binary", threshold=0.3)
    answers = answering.answer(np.array([0.1, 0.3, 0.9]))
    assert answers.decision == [False, True, True]  # on the threshold is yes
    assert fields(answers, "p", "late") == [
        {"p": 0.1, "late": False},
        {"p": 0.3, "late": True},
        {"p": 0.9, "late": True},
    ]
    assert answering.shown == {"threshold": 0.3}


def test_a_multiclass_answer_is_the_likeliest_class_and_every_probability() -> None:
    answering = Answering("multiclass", classes=("dry", "light", "heavy"))
    answers = answering.answer(np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1]]))
    assert answers.label == ["light", "dry"]
    assert answers.score == [0.5, 0.7]  # the likeliest class's probability
    assert fields(answers, "chances", "rainfall")[0] == {
        "rainfall": "light",
        "chances": {"dry": 0.2, "light": 0.5, "heavy": 0.3},
    }
    assert answering.shown == {}


def test_a_regression_answer_is_the_value_and_its_interval() -> None:
    answers = Answering("regression", interval=2.0, coverage=0.9).answer(np.array([10.0, -1.5]))
    assert fields(answers, "temp", "") == [
        {"temp": 10.0, "temp_low": 8.0, "temp_high": 12.0},
        {"temp": -1.5, "temp_low": -3.5, "temp_high": 0.5},
    ]


def test_the_interval_is_the_conformal_quantile_of_the_errors() -> None:
    # errors 1..10: with 10 rows, 90% coverage takes the ceil(11 * 0.9) = 10th smallest error
    values = np.zeros(10)
    predictions = np.arange(1.0, 11.0) * np.where(np.arange(10) % 2, 1, -1)
    assert interval_halfwidth(values, predictions, 0.9) == 10.0
    assert interval_halfwidth(values, predictions, 0.5) == 6.0  # ceil(5.5) = 6th
    # on many rows from one distribution, the interval holds about its coverage on new rows
    rng = np.random.default_rng(3)
    half = interval_halfwidth(np.zeros(5000), rng.normal(0, 1, 5000), 0.9)
    held = np.mean(np.abs(rng.normal(0, 1, 20000)) <= half)
    assert 0.88 < held < 0.92


@pytest.mark.parametrize(
    "answering",
    [
        Answering("binary", threshold=0.25),
        Answering("multiclass", classes=("a", "b", "c")),
        Answering("regression", interval=1.5, coverage=0.8),
    ],
)
def test_what_is_recorded_with_the_model_reads_back_the_same(answering: Answering) -> None:
    assert Answering.from_metadata(answering.metadata()) == answering


def test_models_recorded_before_tasks_answer_as_binary_and_a_missing_fact_is_refused() -> None:
    assert Answering.from_metadata({"threshold": 0.4}) == Answering("binary", threshold=0.4)
    with pytest.raises(AnsweringError, match="threshold"):
        Answering.from_metadata({})
    with pytest.raises(AnsweringError, match="class names"):
        Answering.from_metadata({"task": "multiclass"})
