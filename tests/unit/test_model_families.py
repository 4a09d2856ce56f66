"""Model families behind one interface: every family fits, scores in [0, 1], explains itself,
and comes back from its saved folder giving the same scores; a broken folder is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import models

FAMILIES = [
    ("lightgbm", {"num_boost_round": 40, "min_data_in_leaf": 5, "learning_rate": 0.2}),
    ("sklearn", {"estimator": "sklearn.linear_model.LogisticRegression"}),
    ("sklearn", {"estimator": "sklearn.svm.SVC"}),
    ("sklearn", {"estimator": "sklearn.svm.LinearSVC"}),
    (
        "sklearn",
        {
            "estimator": "sklearn.neural_network.MLPClassifier",
            "estimator_params": {"max_iter": 400},
        },
    ),
]


@pytest.fixture(scope="module")
def data() -> models.TrainingData:
    """A signal in `x`, noise in `noise`, a category in `code`; some values missing."""
    rng = np.random.default_rng(3)
    rows = 400
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "code": rng.integers(0, 3, rows).astype("float64"),
        }
    )
    labels = (frame["x"] + 0.3 * rng.normal(size=rows) > 0).astype(int).to_numpy()
    frame.loc[::9, "noise"] = np.nan
    return models.TrainingData(
        train=frame.iloc[:300],
        train_labels=labels[:300],
        validation=frame.iloc[300:],
        validation_labels=labels[300:],
        categorical=("code",),
        seed=42,
    )


@pytest.mark.parametrize(("name", "params"), FAMILIES, ids=lambda v: str(v)[:40])
def test_a_family_fits_scores_explains_and_round_trips(
    name: str, params: dict, data: models.TrainingData, tmp_path: Path
) -> None:
    model = models.family(name).fit(data, params)
    scores = model.probabilities(data.validation)
    assert scores.shape == (len(data.validation),)
    assert ((scores >= 0) & (scores <= 1)).all()
    # it learned the signal: better than chance on rows it did not see
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.validation_labels, scores) > 0.8
    importance = model.importances(data)
    assert importance.sum() == pytest.approx(1.0)
    assert importance.idxmax() == "x"
    folder = tmp_path / "model"
    model.save(folder, signature=None, input_example=None, metadata={"threshold": 0.5})
    again = models.load(folder)
    assert (again.family, again.features) == (name, ["x", "noise", "code"])
    np.testing.assert_allclose(again.probabilities(data.validation), scores, atol=1e-12)
    assert models.metadata_of(folder)["threshold"] == 0.5


def test_the_folder_digest_sees_any_changed_file(data: models.TrainingData, tmp_path: Path) -> None:
    model = models.family("sklearn").fit(
        data, {"estimator": "sklearn.linear_model.LogisticRegression"}
    )
    folder = tmp_path / "model"
    model.save(folder, signature=None, input_example=None, metadata={})
    before = models.folder_digest(folder)
    assert models.folder_digest(folder) == before
    (folder / "extra.txt").write_text("x")
    assert models.folder_digest(folder) != before


def test_unknown_family_and_estimator_are_named(data: models.TrainingData) -> None:
    with pytest.raises(models.ModelError, match="unknown model family 'xgb'"):
        models.family("xgb")
    with pytest.raises(models.ModelError, match=r"sklearn\.nope\.Thing.*cannot be imported"):
        models.family("sklearn").fit(data, {"estimator": "sklearn.nope.Thing"})
    with pytest.raises(models.ModelError, match="has no predict_proba nor decision_function"):
        models.family("sklearn").fit(data, {"estimator": "sklearn.linear_model.LinearRegression"})
    with pytest.raises(models.ModelError, match="must name an estimator"):
        models.family("sklearn").fit(data, {})


def _task_data(task: str) -> models.TrainingData:
    """The same inputs with a label of `task`: three classes cut from the signal, or the
    signal itself as an amount."""
    rng = np.random.default_rng(5)
    rows = 600
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "code": rng.integers(0, 3, rows).astype("float64"),
        }
    )
    signal = frame["x"] + 0.2 * rng.normal(size=rows)
    if task == models.MULTICLASS:
        labels = np.digitize(signal, [-0.5, 0.5])  # 0, 1, 2
    else:
        labels = (10 * signal + 20).to_numpy()
    frame.loc[::11, "noise"] = np.nan
    return models.TrainingData(
        train=frame.iloc[:450],
        train_labels=np.asarray(labels[:450]),
        validation=frame.iloc[450:],
        validation_labels=np.asarray(labels[450:]),
        categorical=("code",),
        seed=42,
        task=task,
        classes=3,
    )


TASK_FAMILIES = [
    (models.MULTICLASS, "lightgbm", {"num_boost_round": 60, "min_data_in_leaf": 5}),
    (models.MULTICLASS, "sklearn", {"estimator": "sklearn.linear_model.LogisticRegression"}),
    (models.MULTICLASS, "sklearn", {"estimator": "sklearn.svm.LinearSVC"}),
    (models.REGRESSION, "lightgbm", {"num_boost_round": 80, "min_data_in_leaf": 5}),
    (models.REGRESSION, "sklearn", {"estimator": "sklearn.linear_model.Ridge"}),
    (
        models.REGRESSION,
        "sklearn",
        {"estimator": "sklearn.ensemble.HistGradientBoostingRegressor"},
    ),
]


@pytest.mark.parametrize(("task", "name", "params"), TASK_FAMILIES, ids=lambda v: str(v)[:40])
def test_a_family_fits_each_task_and_round_trips(
    task: str, name: str, params: dict, tmp_path: Path
) -> None:
    from models.evaluation import MULTICLASS_CLASSIFICATION, REGRESSION

    data = _task_data(task)
    model = models.family(name).fit(data, params)
    predicted = model.predict(data.validation)
    if task == models.MULTICLASS:
        assert predicted.shape == (len(data.validation), 3)
        np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-6)
        metrics = MULTICLASS_CLASSIFICATION.evaluate(data.validation_labels, predicted)
        assert metrics["accuracy"] > 0.8, metrics
    else:
        assert predicted.shape == (len(data.validation),)
        metrics = REGRESSION.evaluate(data.validation_labels, predicted)
        assert metrics["mae"] < 4.0 and metrics["r2"] > 0.8, metrics  # noise alone: MAE 1.6
    with pytest.raises(models.ModelError, match=f"a {task} model has no probability"):
        model.probabilities(data.validation)
    importance = model.importances(data)
    assert importance.idxmax() == "x"
    folder = tmp_path / "model"
    model.save(folder, signature=None, input_example=None, metadata={})
    again = models.load(folder)
    assert (again.family, again.task) == (name, task)
    np.testing.assert_allclose(again.predict(data.validation), predicted, atol=1e-9)


def test_a_classifier_is_refused_for_a_regression() -> None:
    with pytest.raises(models.ModelError, match="LogisticRegression is not a regressor"):
        models.family("sklearn").fit(
            _task_data(models.REGRESSION), {"estimator": "sklearn.linear_model.LogisticRegression"}
        )
