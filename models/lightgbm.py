"""The LightGBM family: gradient-boosted trees with early stopping on the validation rows.

`params` are LightGBM's own, passed through, plus `num_boost_round` and
`early_stopping_rounds`; the seed and determinism come from `training.seed`. Missing inputs
(NaN) are routed as the trees learned to, which is why serving loads the native booster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import TrainingData, description, shares

NAME = "lightgbm"
BOOSTING_KEYS = {"num_boost_round": 400, "early_stopping_rounds": 30}


def booster_params(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    given = {k: v for k, v in params.items() if k not in BOOSTING_KEYS}
    return {
        "objective": "binary",
        "verbosity": -1,
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
    family: str = NAME

    def probabilities(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        matrix = inputs if isinstance(inputs, np.ndarray) else inputs[self.features]
        return np.asarray(self.booster.predict(matrix), dtype="float64")

    def importances(self, data: TrainingData) -> pd.Series:
        return shares(self.booster.feature_importance("gain"), self.features)

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
        settings = booster_params(params, data.seed)
        booster = lgb.train(
            settings,
            train,
            num_boost_round=boosting["num_boost_round"],
            valid_sets=[validation],
            callbacks=[lgb.early_stopping(boosting["early_stopping_rounds"], verbose=False)],
        )
        return LightGBMModel(booster, features, {**settings, **boosting})

    def load(self, folder: Path, features: list[str]) -> LightGBMModel:
        import mlflow.lightgbm

        booster = mlflow.lightgbm.load_model(str(folder))
        if list(booster.feature_name()) != features:
            raise ValueError(
                f"the booster takes {booster.feature_name()} but its description says {features}"
            )
        return LightGBMModel(booster, features, {})
