"""What a model's predictions become: the answer a client reads, a record of the prediction log,
a row of batch scores, per kind of task (`models.evaluation`).

What turns a prediction into an answer is fixed when the model is trained and recorded in its
metadata, so the service, batch scoring and the monitor answer exactly as the model was judged:

- binary: the decision threshold. The answer is P(positive) and whether it reaches the threshold.
- multiclass: the class names, in label order. The answer is each class's probability and the
  likeliest class.
- regression: the half-width of a prediction interval. The answer is the value and the interval
  around it that held `coverage` of the validation rows (split conformal prediction: the
  `coverage` quantile of the absolute validation errors, so any model family has one).

Every answer also has one number per row, its `score`, which the prediction log keeps and the
monitor watches for drift: P(positive) (binary), the likeliest class's probability
(multiclass), the value (regression).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import BINARY, MULTICLASS, REGRESSION, TASK_KEY

# Metadata keys (the MLflow model's and the BentoML model's), besides the task's own key.
THRESHOLD_KEY = "threshold"
CLASSES_KEY = "classes"
INTERVAL_KEY = "interval"
COVERAGE_KEY = "interval_coverage"


class AnsweringError(ValueError):
    """A model's metadata does not say how to answer with it."""


def interval_halfwidth(values: np.ndarray, predictions: np.ndarray, coverage: float) -> float:
    """The half-width of split-conformal intervals: the `coverage` quantile of the absolute
    errors on rows the model was not fitted on, with the finite-sample correction (the
    ceil((n + 1) * coverage)-th smallest error), so that intervals hold at least `coverage`
    of new rows from the same distribution."""
    errors = np.sort(np.abs(np.asarray(predictions, "float64") - np.asarray(values, "float64")))
    if errors.size == 0:
        raise ValueError("no rows to measure the prediction interval on")
    rank = min(errors.size, math.ceil((errors.size + 1) * coverage))
    return float(errors[rank - 1])


@dataclass(frozen=True)
class Answers:
    """A batch of answers, one entry per row in each list that applies to the task."""

    score: list[float]
    # binary: whether the score reaches the threshold
    decision: list[bool] | None = None
    # multiclass: the likeliest class, and every class's probability
    label: list[str] | None = None
    probabilities: list[dict[str, float]] | None = None
    # regression: the prediction interval
    low: list[float] | None = None
    high: list[float] | None = None


@dataclass(frozen=True)
class Answering:
    """How a model's predictions become answers (see the module's docstring)."""

    task: str = BINARY
    threshold: float | None = None
    classes: tuple[str, ...] = ()
    interval: float | None = None
    coverage: float | None = None

    def __post_init__(self) -> None:
        if self.task == BINARY and self.threshold is None:
            raise AnsweringError("a binary model needs its decision threshold")
        if self.task == MULTICLASS and len(self.classes) < 2:
            raise AnsweringError("a multiclass model needs its class names")
        if self.task not in (BINARY, MULTICLASS, REGRESSION):
            raise AnsweringError(f"unknown task {self.task!r}")

    def metadata(self) -> dict[str, Any]:
        """The keys recorded with the model (only those of its task)."""
        recorded: dict[str, Any] = {TASK_KEY: self.task}
        if self.task == BINARY:
            recorded[THRESHOLD_KEY] = self.threshold
        elif self.task == MULTICLASS:
            recorded[CLASSES_KEY] = list(self.classes)
        elif self.interval is not None:
            recorded[INTERVAL_KEY] = self.interval
            recorded[COVERAGE_KEY] = self.coverage
        return recorded

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Answering:
        """Read back from a model's metadata (models recorded before tasks were are binary)."""
        task = str(metadata.get(TASK_KEY, BINARY))
        threshold = metadata.get(THRESHOLD_KEY)
        interval = metadata.get(INTERVAL_KEY)
        coverage = metadata.get(COVERAGE_KEY)
        return cls(
            task=task,
            threshold=None if threshold is None or task != BINARY else float(threshold),
            classes=tuple(str(c) for c in metadata.get(CLASSES_KEY) or ()),
            interval=None if interval is None else float(interval),
            coverage=None if coverage is None else float(coverage),
        )

    @property
    def shown(self) -> dict[str, Any]:
        """What every answer of the model carries besides its own fields: a binary model's
        threshold (the client sees where the decision was taken)."""
        return {} if self.threshold is None else {THRESHOLD_KEY: self.threshold}

    def answer(self, predictions: np.ndarray) -> Answers:
        """`Model.predict`'s output as answers."""
        if self.task == BINARY:
            scores = np.asarray(predictions, dtype="float64").tolist()
            threshold = self.threshold
            return Answers(score=scores, decision=[score >= threshold for score in scores])
        if self.task == MULTICLASS:
            matrix = np.asarray(predictions, dtype="float64")
            likeliest = matrix.argmax(axis=1)
            classes = self.classes
            return Answers(
                score=matrix[np.arange(len(matrix)), likeliest].tolist(),
                label=[classes[index] for index in likeliest.tolist()],
                probabilities=[dict(zip(classes, row, strict=True)) for row in matrix.tolist()],
            )
        values = np.asarray(predictions, dtype="float64")
        if self.interval is None:
            return Answers(score=values.tolist())
        return Answers(
            score=values.tolist(),
            low=(values - self.interval).tolist(),
            high=(values + self.interval).tolist(),
        )


def fields(answers: Answers, score_field: str, decision_field: str) -> list[dict[str, Any]]:
    """Each answer as the response fields of one item, under the use case's names:
    binary {score: P, decision: bool}; multiclass {decision: class, score: {class: P}};
    regression {score: value, score_low, score_high}."""
    if answers.decision is not None:
        return [
            {score_field: score, decision_field: decision}
            for score, decision in zip(answers.score, answers.decision, strict=True)
        ]
    if answers.label is not None and answers.probabilities is not None:
        return [
            {decision_field: label, score_field: probabilities}
            for label, probabilities in zip(answers.label, answers.probabilities, strict=True)
        ]
    if answers.low is not None and answers.high is not None:
        low_field, high_field = interval_fields(score_field)
        return [
            {score_field: value, low_field: low, high_field: high}
            for value, low, high in zip(answers.score, answers.low, answers.high, strict=True)
        ]
    return [{score_field: value} for value in answers.score]


def interval_fields(score_field: str) -> tuple[str, str]:
    """The response's names of a regression's interval bounds."""
    return f"{score_field}_low", f"{score_field}_high"
