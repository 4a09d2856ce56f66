"""Model families behind one interface: fit, probabilities, importances, log, load.

A family is chosen in config (`training.model: {family: ..., params: {...}}`); training, batch
scoring, the promotion gate and serving all go through `family(name)` and `load(folder)`, so
none of them knows which library made the model. A model predicts for its task
(`models.evaluation`): the positive class's probability per row (binary), a probability per
class per row (multiclass), a value per row (regression).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

# Keys of the MLflow model's metadata (its MLmodel file): which family made it and the inputs
# it takes, in order.
FAMILY_KEY = "model_family"
FEATURES_KEY = "features"
TASK_KEY = "task"
BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
MLMODEL = "MLmodel"


class ModelError(RuntimeError):
    """A model cannot be fitted, saved or loaded as asked; the message says why."""


@dataclass(frozen=True)
class TrainingData:
    """What a family fits on: inputs in the model's column order and labels of the task:
    0/1 (binary), class indices 0..classes-1 (multiclass), values (regression)."""

    train: pd.DataFrame
    train_labels: np.ndarray
    validation: pd.DataFrame
    validation_labels: np.ndarray
    # Integer-coded categorical columns among the inputs.
    categorical: tuple[str, ...]
    seed: int
    task: str = BINARY
    # Multiclass: how many classes (labels are 0..classes-1).
    classes: int = 2


class Model(Protocol):
    """A fitted model of any family."""

    family: str
    features: list[str]
    task: str

    def predict(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The task's prediction: P(positive) per row (binary), an (n, classes) matrix of
        class probabilities (multiclass), a value per row (regression). Missing inputs are
        NaN. A frame is read by column name; a float64 matrix (the request path) must hold
        `features`, in that order."""

    def probabilities(self, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(positive) per row, for a binary model (what `predict` gives for that task)."""

    def importances(self, data: TrainingData) -> pd.Series:
        """Each input's share of what the model relies on (sums to 1), by the family's measure."""

    def contributions(self, inputs: pd.DataFrame | np.ndarray) -> Any:
        """SHAP values of each row's prediction (`models.explain.Contributions`): per input,
        how much it moved the output, from a base value they add up from."""

    def params(self) -> dict[str, Any]:
        """What to record about the fit (hyperparameters, trees grown, ...)."""

    def summary(self) -> str:
        """One line for people, e.g. "240 trees"."""

    def save(self, folder: Path, *, signature: Any, input_example: Any, metadata: dict) -> None:
        """Write the model as an MLflow model folder of its flavour."""

    def log(self, *, signature: Any, input_example: Any, metadata: dict) -> Any:
        """Log the model to the active MLflow run (`name="model"`); returns MLflow's ModelInfo."""


class Family(Protocol):
    name: str

    def fit(self, data: TrainingData, params: Mapping[str, Any]) -> Model: ...

    def load(self, folder: Path, features: list[str], task: str) -> Model: ...


def family(name: str) -> Family:
    """The family registered under `name` (`lightgbm`, `sklearn`)."""
    if name == "lightgbm":
        from models.lightgbm import LightGBMFamily

        return LightGBMFamily()
    if name == "sklearn":
        from models.sklearn import SklearnFamily

        return SklearnFamily()
    raise ModelError(f"unknown model family {name!r}: one of lightgbm, sklearn")


def description(model: Model, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The model's metadata for MLflow: the caller's, plus its family, inputs and task."""
    return {
        **metadata,
        FAMILY_KEY: model.family,
        FEATURES_KEY: list(model.features),
        TASK_KEY: model.task,
    }


def binary_only(model: Model, inputs: pd.DataFrame | np.ndarray) -> np.ndarray:
    """`Model.probabilities`: `predict`, for a binary model only."""
    if model.task != BINARY:
        raise ModelError(f"a {model.task} model has no probability of a positive class")
    return model.predict(inputs)


def folder_digest(folder: Path) -> str:
    """sha256 over every file of a model folder (relative path and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def metadata_of(folder: Path) -> dict[str, Any]:
    """The metadata an MLflow model folder records (its MLmodel file)."""
    import yaml

    mlmodel = folder / MLMODEL
    if not mlmodel.is_file():
        raise ModelError(f"{folder} has no {MLMODEL}: not an MLflow model")
    return dict((yaml.safe_load(mlmodel.read_text()) or {}).get("metadata") or {})


def load(folder: Path) -> Model:
    """The model saved in `folder` (an MLflow model folder), by the family its metadata names."""
    spec = metadata_of(folder)
    if FAMILY_KEY not in spec or FEATURES_KEY not in spec:
        raise ModelError(f"{folder}: its metadata names no {FAMILY_KEY} and {FEATURES_KEY}")
    features = [str(n) for n in spec[FEATURES_KEY]]
    # Models saved before the task was recorded are binary.
    model = family(str(spec[FAMILY_KEY])).load(folder, features, str(spec.get(TASK_KEY, BINARY)))
    from models.calibration import CALIBRATION_KEY, Calibrated, Calibration

    calibration = Calibration.from_metadata(spec.get(CALIBRATION_KEY))
    return model if calibration.identity else Calibrated(model, calibration)


def shares(values: np.ndarray, features: list[str]) -> pd.Series:
    """Non-negative importances as shares that sum to 1 (all zero stays zero)."""
    clipped = np.clip(np.asarray(values, dtype="float64"), 0.0, None)
    total = clipped.sum()
    return pd.Series(clipped / total if total > 0 else clipped, index=features)
