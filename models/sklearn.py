"""The scikit-learn family: any estimator named by import path (a classifier with
`predict_proba` for the classification tasks, a regressor for regression), inside a pipeline
that imputes and encodes, so linear models, SVMs and neural networks all work.

`params`: `estimator` (e.g. `sklearn.linear_model.LogisticRegression`) and `estimator_params`
(its keyword arguments). Numeric inputs are imputed by their median and standardised;
categorical codes are imputed by the most frequent code and one-hot encoded (an unseen code
is all zeros). An estimator with no probabilities of its own (an SVM: `SVC`, `LinearSVC`) is
calibrated on its training rows (`CalibratedClassifierCV(..., ensemble=False)`, as
scikit-learn advises), and one that takes `random_state` gets `training.seed`. Importances
are permutation importances on the validation rows, the same measure for every estimator:
the drop in ROC AUC (binary), in log loss (multiclass), in mean absolute error (regression).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    ModelError,
    TrainingData,
    binary_only,
    description,
    metadata_of,
    shares,
)
from models.explain import CLASS_PROBABILITY, PROBABILITY, VALUE, Contributions

# What the permutation explainer's contributions add up to, per task.
EXPLAINED = {BINARY: PROBABILITY, MULTICLASS: CLASS_PROBABILITY, REGRESSION: VALUE}

NAME = "sklearn"
# Rows of the validation set the permutation importances are measured on (bounded cost).
IMPORTANCE_ROWS = 2000
# Training rows kept with the model as the background of its explanations: what an input
# "missing from the coalition" takes instead (SHAP's permutation explainer; the cost of one
# explanation grows with them).
BACKGROUND_ROWS = 32
BACKGROUND_KEY = "explain_background"
# The explainer's permutations are seeded: one prediction is explained the same way everywhere.
EXPLAIN_SEED = 0
# What a permutation importance is measured by, per task (scikit-learn's scorer names).
IMPORTANCE_SCORING = {
    BINARY: "roc_auc",
    MULTICLASS: "neg_log_loss",
    REGRESSION: "neg_mean_absolute_error",
}


def estimator_class(path: str, task: str = BINARY) -> type:
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ModelError(
            f"training.model.params.estimator {path!r} cannot be imported: {err}"
        ) from err
    if task == REGRESSION:
        if not hasattr(found, "predict") or hasattr(found, "predict_proba"):
            raise ModelError(f"{path} is not a regressor: a regression needs one")
    elif not (hasattr(found, "predict_proba") or hasattr(found, "decision_function")):
        raise ModelError(
            f"{path} has no predict_proba nor decision_function: the task needs probabilities"
        )
    return found


def needs_calibration(kind: type) -> bool:
    """Estimators whose scores are not probabilities (or only with the deprecated
    `probability=True`, as SVC)."""
    takes_probability = "probability" in inspect.signature(kind).parameters
    return takes_probability or not hasattr(kind, "predict_proba")


def pipeline(estimator: Any, features: list[str], categorical: tuple[str, ...]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    codes = [c for c in features if c in categorical]
    numbers = [c for c in features if c not in categorical]
    prepare = ColumnTransformer(
        [
            (
                "numbers",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numbers,
            ),
            (
                "codes",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                codes,
            ),
        ]
    )
    return Pipeline([("prepare", prepare), ("estimator", estimator)])


@dataclass
class SklearnModel:
    pipeline: Any
    features: list[str]
    trained_with: dict[str, Any] = field(default_factory=dict)
    task: str = BINARY
    family: str = NAME
    # Training rows the explanations take absent inputs from (see BACKGROUND_ROWS).
    background: np.ndarray | None = None

    def predict(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        # The pipeline picks its columns by name: a matrix is named first.
        frame = (
            pd.DataFrame(inputs, columns=self.features)
            if isinstance(inputs, np.ndarray)
            else inputs[self.features]
        )
        if self.task == REGRESSION:
            return np.asarray(self.pipeline.predict(frame), dtype="float64")
        probabilities = np.asarray(self.pipeline.predict_proba(frame), dtype="float64")
        return probabilities[:, 1] if self.task == BINARY else probabilities

    def probabilities(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        return binary_only(self, inputs)

    def importances(self, data: TrainingData) -> pd.Series:
        from sklearn.inspection import permutation_importance

        rows = min(len(data.validation), IMPORTANCE_ROWS)
        sample = data.validation.sample(n=rows, random_state=data.seed)
        labels = pd.Series(data.validation_labels, index=data.validation.index).loc[sample.index]
        measured = permutation_importance(
            self.pipeline,
            sample,
            labels,
            scoring=IMPORTANCE_SCORING[self.task],
            n_repeats=3,
            random_state=data.seed,
        )
        return shares(measured.importances_mean, self.features)

    def contributions(self, inputs: pd.DataFrame | np.ndarray) -> Contributions:
        """SHAP's permutation explainer (model-agnostic, exact in sum: each row's contributions
        add up to its prediction minus the background's average), in the prediction's own
        unit: the probability (binary), the likeliest class's probability, the value."""
        import shap

        if self.background is None:
            raise ModelError("this model was saved without a background: it cannot explain")
        matrix = (
            inputs[self.features].to_numpy(dtype="float64")
            if isinstance(inputs, pd.DataFrame)
            else np.asarray(inputs, dtype="float64")
        )
        chosen = self.predict(matrix).argmax(axis=1) if self.task == MULTICLASS else None
        width = len(self.features)
        explainer = shap.PermutationExplainer(
            self.predict,
            shap.maskers.Independent(self.background, max_samples=len(self.background)),
            seed=EXPLAIN_SEED,
        )
        explained = explainer(matrix, max_evals=max(2 * width + 1, 10 * width), silent=True)
        values = np.asarray(explained.values, dtype="float64")
        base = np.asarray(explained.base_values, dtype="float64")
        if chosen is not None:  # (rows, features, classes): the likeliest class's
            rows = np.arange(len(matrix))
            values, base = values[rows, :, chosen], base[rows, chosen]
        return Contributions(
            values.reshape(len(matrix), width),
            base.reshape(len(matrix)),
            list(self.features),
            EXPLAINED[self.task],
        )

    def params(self) -> dict[str, Any]:
        return dict(self.trained_with)

    def summary(self) -> str:
        estimator = self.pipeline.named_steps["estimator"]
        inner = getattr(estimator, "estimator", None)
        if inner is not None:
            return f"{type(inner).__name__}, calibrated"
        return type(estimator).__name__

    def _flavour(self, signature: Any, input_example: Any, metadata: dict) -> dict[str, Any]:
        import sklearn
        import skops
        import skops.io

        # Saved with skops, not pickle: loading trusts exactly the types this pipeline is made of.
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(self.pipeline))
        return {
            "serialization_format": "skops",
            "skops_trusted_types": trusted,
            "signature": signature,
            "input_example": input_example,
            "pip_requirements": [
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
            ],
            "metadata": {
                **description(self, metadata),
                **({} if self.background is None else {BACKGROUND_KEY: _as_lists(self.background)}),
            },
        }

    def save(self, folder: Path, *, signature: Any, input_example: Any, metadata: dict) -> None:
        import mlflow.sklearn

        kwargs = self._flavour(signature, input_example, metadata)
        mlflow.sklearn.save_model(self.pipeline, str(folder), **kwargs)

    def log(self, *, signature: Any, input_example: Any, metadata: dict) -> Any:
        import mlflow.sklearn

        kwargs = self._flavour(signature, input_example, metadata)
        return mlflow.sklearn.log_model(self.pipeline, name="model", **kwargs)


class SklearnFamily:
    name = NAME

    def fit(self, data: TrainingData, params: Mapping[str, Any]) -> SklearnModel:
        path = params.get("estimator")
        if not isinstance(path, str):
            raise ModelError(
                "training.model.params.estimator must name an estimator, e.g. "
                "sklearn.linear_model.LogisticRegression"
            )
        kind = estimator_class(path, data.task)
        arguments = dict(params.get("estimator_params") or {})
        accepted = inspect.signature(kind).parameters
        if "random_state" in accepted:
            arguments.setdefault("random_state", data.seed)
        try:
            estimator = kind(**arguments)
        except TypeError as err:
            raise ModelError(f"{path}({arguments}): {err}") from err
        if data.task != REGRESSION and needs_calibration(kind):
            from sklearn.calibration import CalibratedClassifierCV

            estimator = CalibratedClassifierCV(estimator, ensemble=False)
        features = list(data.train.columns)
        fitted = pipeline(estimator, features, data.categorical).fit(data.train, data.train_labels)
        rows = min(len(data.train), BACKGROUND_ROWS)
        background = data.train.sample(n=rows, random_state=data.seed)[features]
        return SklearnModel(
            fitted,
            features,
            {"estimator": path, **arguments},
            data.task,
            background=background.to_numpy(dtype="float64"),
        )

    def load(self, folder: Path, features: list[str], task: str = BINARY) -> SklearnModel:
        import mlflow.sklearn

        recorded = metadata_of(folder).get(BACKGROUND_KEY)
        background = (
            None
            if recorded is None
            else np.array(
                [[np.nan if v is None else v for v in row] for row in recorded], "float64"
            )
        )
        return SklearnModel(
            mlflow.sklearn.load_model(str(folder)), features, task=task, background=background
        )


def _as_lists(matrix: np.ndarray) -> list[list[float | None]]:
    """Rows as plain lists for the model's metadata (missing values as None)."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
