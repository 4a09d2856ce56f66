"""Slices: the parts of the examples a model is judged on one by one (an airline, an airport, a
month, a band of distances), so that a model better on average but much worse for one part is
seen in its report and refused by the gate (`pipelines.promote`).

A use case declares its slices (`UseCase.slices`): a column of the scored rows (an entity's
join key or a model input) and, for a number, the edges of its bands. Each value (or band) is a
slice; each slice is measured by the task's metrics on its own rows, with its support (how many
rows it has) beside it, since a metric on 30 rows says little.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from models.evaluation import Task
from usecases.contract import Slice

# The slice of rows whose column is missing.
UNKNOWN = "unknown"


def _number(edge: float) -> str:
    return f"{edge:g}"


def band_labels(edges: Sequence[float]) -> list[str]:
    """The bands' names, in order: "under 500", "500-1000", ..., "2000 and over" (characters an
    MLflow metric name may hold)."""
    inner = [f"{_number(low)}-{_number(high)}" for low, high in pairwise(edges)]
    return [f"under {_number(edges[0])}", *inner, f"{_number(edges[-1])} and over"]


def values_of(frame: pd.DataFrame, part: Slice) -> pd.Series:
    """The slice each row belongs to, as text: the column's value, or its band."""
    column = frame[part.column]
    if part.bands:
        edges = [-math.inf, *part.bands, math.inf]
        banded = pd.cut(
            pd.to_numeric(column, errors="coerce"),
            edges,
            right=False,
            labels=band_labels(part.bands),
        )
        return banded.astype("object").where(banded.notna(), UNKNOWN).astype(str)
    shown = column.map(_shown)
    return shown.where(column.notna(), UNKNOWN).astype(str)


def _shown(value: object) -> str:
    """A value as a slice's name: a whole float as an integer (month 11.0 is "11")."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class SliceMetrics:
    """One slice of the test rows: which (`slice` is the declaration's name, `value` the part),
    how many rows, and the task's metrics on them (empty when they cannot be measured, e.g. a
    binary task's slice with one label only)."""

    slice: str
    value: str
    support: int
    metrics: dict[str, float]

    @property
    def name(self) -> str:
        return f"{self.slice}={self.value}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure(
    frame: pd.DataFrame,
    labels: np.ndarray,
    predictions: np.ndarray,
    threshold: float | None,
    slices: Iterable[Slice],
    task: Task,
) -> list[SliceMetrics]:
    """Every slice of `frame`'s rows (largest first within each declaration), measured on
    `predictions` (the model's, row for row) against `labels`."""
    measured = []
    for part in slices:
        values = values_of(frame, part).to_numpy()
        names, counts = np.unique(values, return_counts=True)
        for value in names[np.argsort(-counts, kind="stable")]:
            rows = values == value
            measured.append(
                SliceMetrics(
                    part.name,
                    str(value),
                    int(rows.sum()),
                    _metrics(task, labels[rows], predictions[rows], threshold),
                )
            )
    return measured


def _metrics(
    task: Task, labels: np.ndarray, predictions: np.ndarray, threshold: float | None
) -> dict[str, float]:
    """The task's metrics on one slice; none where they are undefined (a classification slice
    with a single label)."""
    if task.kind != "regression" and len(np.unique(labels)) < 2:
        return {}
    try:
        return task.evaluate(labels, predictions, threshold)
    except ValueError:  # a multiclass slice missing some classes: no per-slice log loss
        return {}


def worse_slices(
    candidate: Sequence[SliceMetrics],
    champion: Sequence[SliceMetrics],
    metric: str,
    max_drop: float,
    min_support: int,
    task: Task,
    decimals: int = 9,
) -> list[str]:
    """Why the candidate is refused on its slices: one line per slice with at least
    `min_support` rows where it is worse than the champion, on the same rows, by more than
    `max_drop` on `metric` (worst first)."""
    theirs = {(s.slice, s.value): s for s in champion}
    lower = metric in task.lower_is_better
    found = []
    for ours in candidate:
        other = theirs.get((ours.slice, ours.value))
        if ours.support < min_support or other is None:
            continue
        if metric not in ours.metrics or metric not in other.metrics:
            continue
        new, old = ours.metrics[metric], other.metrics[metric]
        drop = (new - old) if lower else (old - new)
        if round(drop - max_drop, decimals) > 0:
            found.append(
                (
                    drop,
                    f"{ours.name} ({ours.support:,} rows): {metric} {new:.4f} against the "
                    f"champion's {old:.4f} ({new - old:+.4f}; a loss of at most {max_drop} "
                    "allowed)",
                )
            )
    return [line for _, line in sorted(found, key=lambda pair: -pair[0])]
