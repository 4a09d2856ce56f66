"""Explanations: how much each input moved a prediction (SHAP values), for one prediction and
for the model as a whole.

For one row, the contributions of its inputs add up, from a base value (the model's average
output), to the model's output for that row exactly: for LightGBM its raw score (the log-odds
of the positive class for a yes/no question), computed by the tree explainer LightGBM carries
(TreeSHAP, `pred_contrib`); for scikit-learn models the predicted probability or value,
estimated by SHAP's permutation explainer against a small background sample of the training
rows kept with the model. The whole model is summarised by each input's average absolute
contribution over a sample of the test rows, and the way it pushes: whether higher values of
the input raise or lower the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# What a family's contributions add up to, in words (the report and the response say it).
LOG_ODDS = "log-odds"
PROBABILITY = "probability"
VALUE = "value"
CLASS_RAW_SCORE = "raw score of the likeliest class"
CLASS_PROBABILITY = "probability of the likeliest class"


@dataclass(frozen=True)
class Contributions:
    """SHAP values of some rows: `values[i, j]` is input j's contribution to row i's output,
    and `base[i] + values[i].sum()` is that output (`output` says which: log-odds,
    probability, value)."""

    values: np.ndarray
    base: np.ndarray
    features: list[str]
    output: str

    def explained(self) -> np.ndarray:
        """The outputs the contributions add up to, row by row."""
        return self.base + self.values.sum(axis=1)


def top(contributions: Contributions, inputs: np.ndarray, row: int, count: int) -> dict[str, Any]:
    """Row `row`'s explanation as the response carries it: the `count` largest contributions
    (by size) with the input's value, the sum of the others, the base and what they add up to."""
    values = contributions.values[row]
    order = np.argsort(-np.abs(values), kind="stable")
    shown, others = order[:count], order[count:]
    return {
        "output": contributions.output,
        "base": float(contributions.base[row]),
        "contributions": [
            {
                "feature": contributions.features[j],
                "value": _value(inputs[row, j]),
                "contribution": float(values[j]),
            }
            for j in shown
        ],
        "others": float(values[others].sum()) if len(others) else 0.0,
        "total": float(contributions.base[row] + values.sum()),
    }


def _value(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


# Below this rank correlation between an input and its contributions, it has no one direction.
DIRECTED = 0.1


def summary(
    contributions: Contributions, inputs: pd.DataFrame, categorical: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Each input's share of the average absolute contribution (sums to 1), its average
    absolute contribution, and its direction: +1 when higher values of the input go with
    higher contributions (Spearman's rank correlation above DIRECTED), -1 when lower, 0
    otherwise (mixed, or a category code, whose order means nothing)."""
    size = np.abs(contributions.values).mean(axis=0)
    total = size.sum()
    directions = []
    for j, name in enumerate(contributions.features):
        column = pd.Series(inputs[name].to_numpy(dtype="float64"))
        pushed = pd.Series(contributions.values[:, j])
        known = column.notna()
        ordered = name not in categorical and known.sum() > 2 and column[known].nunique() > 1
        correlation = column[known].corr(pushed[known], method="spearman") if ordered else np.nan
        directions.append(
            0
            if np.isnan(correlation) or abs(correlation) <= DIRECTED
            else int(np.sign(correlation))
        )
    return (
        pd.DataFrame(
            {
                "feature": contributions.features,
                "mean_abs_contribution": size,
                "share": size / total if total > 0 else size,
                "direction": directions,
            }
        )
        .sort_values("mean_abs_contribution", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
