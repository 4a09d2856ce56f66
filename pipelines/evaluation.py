"""The task's metrics: what the gate, the report and monitoring measure a model by.

Binary classification today (a score per row, a decision at a threshold). Each metric says
which way is better, so the gate never has to guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
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
    """The metrics the gate and the report use, on one set of predictions."""
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


@dataclass(frozen=True)
class Task:
    """What a kind of model is measured by: its metrics, and which way each is better."""

    name: str
    metrics: tuple[str, ...]
    lower_is_better: frozenset[str]
    # (labels, scores, threshold) -> every metric
    evaluate: Callable[[np.ndarray, np.ndarray, float], dict[str, float]]

    def check(self, names: set[str]) -> None:
        unknown = sorted(names - set(self.metrics))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a metric of {self.name} "
                f"(one of {', '.join(self.metrics)})"
            )


BINARY_CLASSIFICATION = Task(
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
    evaluate=evaluate,
)
