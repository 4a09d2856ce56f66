"""The LightGBM family: gradient-boosted trees with early stopping on the validation rows.

`params` are LightGBM's own, passed through, plus `num_boost_round` and
`early_stopping_rounds`; the seed and determinism come from `training.seed`. The objective
follows the task (`binary`, `multiclass` with its number of classes, `regression`: squared
error) unless `params` names another of that task (`regression_l1`, `multiclassova`, ...). Missing inputs
(NaN) are routed as the trees learned to, which is why serving loads the native booster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    TrainingData,
    binary_only,
    description,
    shares,
)
from models.explain import CLASS_RAW_SCORE, LOG_ODDS, VALUE, Contributions

NAME = "lightgbm"
BOOSTING_KEYS = {"num_boost_round": 400, "early_stopping_rounds": 30}


# What the tree explainer's contributions add up to, per task.
RAW = {BINARY: LOG_ODDS, MULTICLASS: CLASS_RAW_SCORE, REGRESSION: VALUE}
# The objective each task starts from (a use case's params may name another of the task).
OBJECTIVES = {BINARY: "binary", MULTICLASS: "multiclass", REGRESSION: "regression"}


def booster_params(
    params: Mapping[str, Any], seed: int, task: str = BINARY, classes: int = 2
) -> dict[str, Any]:
    given = {k: v for k, v in params.items() if k not in BOOSTING_KEYS}
    per_task = {"num_class": classes} if task == MULTICLASS else {}
    return {
        "objective": OBJECTIVES[task],
        "verbosity": -1,
        **per_task,
        **given,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
    }


@dataclass
class LightGBMModel:
    booster: Any
    features: list[str]
    trained_with: dict[str, Any]
    task: str = BINARY
    family: str = NAME

    def predict(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        matrix = inputs if isinstance(inputs, np.ndarray) else inputs[self.features]
        return np.asarray(self.booster.predict(matrix), dtype="float64")

    def probabilities(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        return binary_only(self, inputs)

    def importances(self, data: TrainingData) -> pd.Series:
        return shares(self.booster.feature_importance("gain"), self.features)

    def contributions(self, inputs: pd.DataFrame | np.ndarray) -> Contributions:
        """LightGBM's own tree explainer (TreeSHAP, `pred_contrib`): exact, in the raw score
        (log-odds for binary; the likeliest class's raw score for multiclass)."""
        matrix = inputs if isinstance(inputs, np.ndarray) else inputs[self.features]
        raw = np.asarray(self.booster.predict(matrix, pred_contrib=True), dtype="float64")
        width = len(self.features) + 1
        if self.task == MULTICLASS:
            blocks = raw.reshape(len(raw), -1, width)
            picked = blocks[np.arange(len(raw)), self.predict(matrix).argmax(axis=1)]
        else:
            picked = raw
        return Contributions(picked[:, :-1], picked[:, -1], list(self.features), RAW[self.task])

    def raw_scores(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The booster's raw output (before the logistic or softmax)."""
        matrix = inputs if isinstance(inputs, np.ndarray) else inputs[self.features]
        return np.asarray(self.booster.predict(matrix, raw_score=True), dtype="float64")

    def params(self) -> dict[str, Any]:
        return {**self.trained_with, "best_iteration": self.booster.best_iteration}

    def summary(self) -> str:
        return f"{self.booster.best_iteration} trees"

    def _flavour(self, signature: Any, input_example: Any, metadata: dict) -> dict[str, Any]:
        import lightgbm as lgb

        return {
            "signature": signature,
            "input_example": input_example,
            # Given, not inferred: inference spawns a subprocess and takes seconds.
            "pip_requirements": [
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
            "metadata": description(self, metadata),
        }

    def save(self, folder: Path, *, signature: Any, input_example: Any, metadata: dict) -> None:
        import mlflow.lightgbm

        kwargs = self._flavour(signature, input_example, metadata)
        mlflow.lightgbm.save_model(self.booster, str(folder), **kwargs)

    def log(self, *, signature: Any, input_example: Any, metadata: dict) -> Any:
        import mlflow.lightgbm

        kwargs = self._flavour(signature, input_example, metadata)
        return mlflow.lightgbm.log_model(self.booster, name="model", **kwargs)


class LightGBMFamily:
    name = NAME

    def fit(self, data: TrainingData, params: Mapping[str, Any]) -> LightGBMModel:
        import lightgbm as lgb

        features = list(data.train.columns)
        boosting = {key: int(params.get(key, default)) for key, default in BOOSTING_KEYS.items()}
        train = lgb.Dataset(
            data.train,
            data.train_labels,
            categorical_feature=[c for c in data.categorical if c in features],
            free_raw_data=False,
        )
        validation = lgb.Dataset(data.validation, data.validation_labels, reference=train)
        settings = booster_params(params, data.seed, data.task, data.classes)
        booster = lgb.train(
            settings,
            train,
            num_boost_round=boosting["num_boost_round"],
            valid_sets=[validation],
            callbacks=[lgb.early_stopping(boosting["early_stopping_rounds"], verbose=False)],
        )
        return LightGBMModel(booster, features, {**settings, **boosting}, data.task)

    def load(self, folder: Path, features: list[str], task: str = BINARY) -> LightGBMModel:
        import mlflow.lightgbm

        booster = mlflow.lightgbm.load_model(str(folder))
        if list(booster.feature_name()) != features:
            raise ValueError(
                f"the booster takes {booster.feature_name()} but its description says {features}"
            )
        return LightGBMModel(booster, features, {}, task)
