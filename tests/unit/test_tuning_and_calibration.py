"""Tuning and calibration on the validation rows: a study is reproducible, starts from the
configured parameters and only keeps better ones; a calibration map is kept only when it
lowers the Brier score on validation rows it was not fitted on, and travels with the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import models
from configs.settings import SearchRange, TrainingConfig, TuningConfig
from models import BINARY, TrainingData, calibration
from models.tuning import configured_values, with_values
from pipelines.fit import fit

SPACE = {
    "num_leaves": SearchRange(low=3, high=31, integer=True),
    "learning_rate": SearchRange(low=0.02, high=0.3, log=True),
    "feature_fraction": SearchRange(low=0.5, high=1.0),
}
PARAMS = {"num_boost_round": 60, "num_leaves": 7, "learning_rate": 0.1, "min_data_in_leaf": 10}


def data(seed: int = 11) -> TrainingData:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(1500, 4)), columns=["a", "b", "c", "d"])
    chance = 1 / (1 + np.exp(-(frame["a"] * frame["b"] + frame["c"])))
    labels = (rng.random(len(frame)) < chance).astype(int).to_numpy()
    return TrainingData(frame[:1000], labels[:1000], frame[1000:], labels[1000:], (), seed)


def training(trials: int) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "model": {"family": "lightgbm", "params": PARAMS},
            "tuning": {"trials": trials, "space": {"lightgbm": SPACE}},
        }
    )


def test_a_study_is_the_same_study_each_time() -> None:
    from usecases import load

    usecase = load("synthetic")
    runs = [fit(data(), training(5), usecase, "roc_auc") for _ in range(2)]
    (one_model, one), (other_model, other) = runs
    assert [t.values for t in one.trials] == [t.values for t in other.trials]
    assert [t.score for t in one.trials] == [t.score for t in other.trials]
    rows = data().validation
    np.testing.assert_array_equal(one_model.predict(rows), other_model.predict(rows))
    # Trial 0 is the configuration as given; the study keeps it unless a trial beats it.
    assert one.trials[0].values == {} and len(one.trials) == 5
    assert one.best.score >= one.configured.score
    assert len({tuple(sorted(t.values.items())) for t in one.trials[1:]}) == 4


def test_the_refitted_model_is_the_best_trials() -> None:
    from usecases import load

    model, study = fit(data(), training(4), load("synthetic"), "roc_auc")
    assert model.params()["num_leaves"] == with_values(PARAMS, study.best.values)["num_leaves"]


def test_a_dotted_name_reaches_into_nested_params() -> None:
    params = {"estimator": "x", "estimator_params": {"C": 1.0, "max_iter": 100}}
    assert with_values(params, {"estimator_params.C": 3.0})["estimator_params"] == {
        "C": 3.0,
        "max_iter": 100,
    }
    assert params["estimator_params"]["C"] == 1.0  # the configured params are not changed
    searched = {"estimator_params.C": SearchRange(low=0.01, high=10, log=True)}
    assert configured_values(params, searched) == {"estimator_params.C": 1.0}


def test_a_search_range_says_what_it_holds() -> None:
    assert SearchRange(low=1, high=5, integer=True).holds(3)
    assert not SearchRange(low=1, high=5, integer=True).holds(3.5)
    assert SearchRange(choices=["gbdt", "dart"]).holds("dart")
    with pytest.raises(ValueError, match="low < high"):
        SearchRange(low=5, high=1)
    with pytest.raises(ValueError, match="log-scale"):
        SearchRange(low=0, high=1, log=True)


def test_without_trials_there_is_no_study() -> None:
    from usecases import load

    _, study = fit(data(), training(0), load("synthetic"), "roc_auc")
    assert study is None
    assert TuningConfig().trials == 0


def squashed(rows: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores that rank well but are far from the observed shares."""
    rng = np.random.default_rng(seed)
    truth = rng.random(rows)
    labels = (rng.random(rows) < truth).astype(int)
    return labels, 0.4 + 0.2 * truth  # every score between 0.4 and 0.6


def test_auto_calibration_keeps_a_map_only_when_it_helps_on_held_out_rows() -> None:
    labels, scores = squashed(4000)
    choice = calibration.choose("auto", labels, scores, seed=1)
    assert choice.calibration.method in (calibration.PLATT, calibration.ISOTONIC)
    chosen = choice.held_out_brier[choice.calibration.method]
    assert chosen < choice.held_out_brier[calibration.NONE]
    fresh_labels, fresh_scores = squashed(4000, seed=6)
    assert calibration.brier(
        fresh_labels, choice.calibration.apply(fresh_scores)
    ) < calibration.brier(fresh_labels, fresh_scores)
    # Scores that are already probabilities keep no map.
    rng = np.random.default_rng(2)
    truth = rng.random(4000)
    honest = calibration.choose("auto", (rng.random(4000) < truth).astype(int), truth, seed=1)
    assert honest.calibration.identity


def test_a_calibrated_model_predicts_through_its_map_after_saving(tmp_path) -> None:
    trained = data()
    inner = models.family("lightgbm").fit(trained, PARAMS)
    mapped = calibration.Calibrated(
        inner,
        calibration.fit(
            calibration.PLATT, trained.validation_labels, inner.predict(trained.validation), seed=1
        ),
    )
    mapped.save(tmp_path / "m", signature=None, input_example=None, metadata={})
    loaded = models.load(tmp_path / "m")
    rows = trained.validation
    np.testing.assert_allclose(loaded.predict(rows), mapped.predict(rows), atol=1e-12)
    assert not np.allclose(loaded.predict(rows), inner.predict(rows))
    assert loaded.task == BINARY and "Platt" in loaded.summary()
