"""The kinds of task and their metrics: what the gate, the report and monitoring measure a
model by.

- binary classification: a score per row (the positive class's probability), a decision at a
  threshold;
- multiclass classification: a probability per class per row, the decision the likeliest class;
- regression: a value per row, no decision.

Each metric says which way is better, so the gate never has to guess; each task names the
metric the gate compares by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# scikit-learn's metrics are imported where they are measured: `make check-usecase` reads the
# tasks from this module and stays a half-second check.


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn import metrics as skm

    precision, recall, thresholds = skm.precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the average gap between predicted and observed positive rates,
    over ten equal-sized groups of rows ordered by score (weighted by group size)."""
    order = np.argsort(scores, kind="stable")
    groups = np.array_split(order, bins)
    gaps = [abs(scores[g].mean() - labels[g].mean()) * len(g) for g in groups if len(g)]
    return float(sum(gaps) / len(scores))


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Binary classification: 0/1 labels, P(positive) per row, the decision threshold."""
    from sklearn import metrics as skm

    flagged = scores >= threshold
    return {
        "roc_auc": float(skm.roc_auc_score(labels, scores)),
        "pr_auc": float(skm.average_precision_score(labels, scores)),
        "log_loss": float(skm.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7))),
        "brier": float(skm.brier_score_loss(labels, scores)),
        "precision": float(skm.precision_score(labels, flagged, zero_division=0)),
        "recall": float(skm.recall_score(labels, flagged, zero_division=0)),
        "calibration_error": calibration_error(labels, scores),
        "positive_rate": float(np.mean(labels)),
        "flagged_rate": float(np.mean(flagged)),
    }


def evaluate_multiclass(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float | None = None
) -> dict[str, float]:
    """Multiclass classification: labels as class indices 0..k-1, an (n, k) matrix of class
    probabilities (rows sum to 1); the decision is the likeliest class (no threshold)."""
    from sklearn import metrics as skm

    classes = list(range(probabilities.shape[1]))
    predicted = probabilities.argmax(axis=1)
    clipped = np.clip(probabilities, 1e-7, 1.0)
    return {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(
            skm.f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)
        ),
        "log_loss": float(
            skm.log_loss(labels, clipped / clipped.sum(axis=1, keepdims=True), labels=classes)
        ),
    }


def evaluate_regression(
    values: np.ndarray, predictions: np.ndarray, threshold: float | None = None
) -> dict[str, float]:
    """Regression: the true values and the predicted ones, in the use case's unit."""
    from sklearn import metrics as skm

    errors = np.asarray(predictions, dtype="float64") - np.asarray(values, dtype="float64")
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "median_absolute_error": float(np.median(np.abs(errors))),
        "r2": float(skm.r2_score(values, predictions)),
    }


@dataclass(frozen=True)
class Task:
    """What a kind of model is measured by: its metrics, which way each is better, the one the
    gate compares by default, and how a prediction becomes a decision."""

    kind: str
    name: str
    metrics: tuple[str, ...]
    lower_is_better: frozenset[str]
    primary_metric: str
    # "threshold" (binary), "likeliest class" (multiclass), "none" (regression)
    decision: str
    # (labels, predictions, threshold) -> every metric; the threshold only for binary
    evaluate: Callable[..., dict[str, float]]
    # The metrics a one-line summary shows (the stage's notes, the report's table).
    headline: tuple[str, ...] = ()

    def check(self, names: set[str]) -> None:
        unknown = sorted(names - set(self.metrics))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a metric of {self.name} "
                f"(one of {', '.join(self.metrics)})"
            )


BINARY_CLASSIFICATION = Task(
    kind="binary",
    name="binary classification",
    metrics=(
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "precision",
        "recall",
        "calibration_error",
        "positive_rate",
        "flagged_rate",
    ),
    lower_is_better=frozenset({"log_loss", "brier", "calibration_error"}),
    primary_metric="roc_auc",
    decision="threshold",
    evaluate=evaluate,
    headline=("roc_auc", "pr_auc", "brier", "precision", "recall"),
)

MULTICLASS_CLASSIFICATION = Task(
    kind="multiclass",
    name="multiclass classification",
    metrics=("accuracy", "balanced_accuracy", "macro_f1", "log_loss"),
    lower_is_better=frozenset({"log_loss"}),
    primary_metric="macro_f1",
    decision="likeliest class",
    evaluate=evaluate_multiclass,
    headline=("accuracy", "balanced_accuracy", "macro_f1", "log_loss"),
)

REGRESSION = Task(
    kind="regression",
    name="regression",
    metrics=("mae", "rmse", "median_absolute_error", "r2"),
    lower_is_better=frozenset({"mae", "rmse", "median_absolute_error"}),
    primary_metric="mae",
    decision="none",
    evaluate=evaluate_regression,
    headline=("mae", "rmse", "median_absolute_error", "r2"),
)

TASKS = {task.kind: task for task in (BINARY_CLASSIFICATION, MULTICLASS_CLASSIFICATION, REGRESSION)}


def task(kind: str) -> Task:
    """The task of kind `kind` (binary, multiclass, regression)."""
    if kind not in TASKS:
        raise ValueError(f"unknown task {kind!r}: one of {', '.join(TASKS)}")
    return TASKS[kind]
