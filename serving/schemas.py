"""The serving contract's response, shaped by the use case's target and names: per item, its
answer (`models.answers`), the model version, what was missing and the prediction's id.

- binary: the probability and the decision under the use case's names, and the threshold;
- multiclass: the likeliest class (one of the target's classes) and each class's probability;
- regression: the value, with the bounds of its prediction interval.

The request's item type is the use case's own (`Request.item`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from models import BINARY, MULTICLASS
from models.answers import interval_fields
from usecases.contract import UseCase


class Contribution(BaseModel):
    feature: str
    # The input's value as the model saw it (None: missing).
    value: float | None
    # How much it moved the output, in the output's unit (`Explanation.output`).
    contribution: float


class Explanation(BaseModel):
    """Why one prediction came out as it did: from `base` (the model's average output), the
    largest contributions, and the sum of the others, add up to the model's output in the unit
    `output` names (log-odds for a LightGBM yes/no model: the probability is its logistic)."""

    output: str
    base: float
    contributions: list[Contribution]
    others: float
    # base + contributions + others: the model's output for this item, in `output`'s unit.
    total: float


class PredictionBase(BaseModel):
    model_version: str
    # Stored features with no usable value: the model treats them as missing.
    missing_features: list[str]
    # The prediction's id in the prediction log (what the monitor and lineage read).
    prediction_id: str
    # Only when the request asked for it (`explain: true`).
    explanation: Explanation | None = None


def answer_fields(usecase: UseCase) -> dict[str, Any]:
    """The response fields of one item's answer, for the use case's target."""
    outcome, target = usecase.outcome, usecase.target
    if target.kind == BINARY:
        return {
            outcome.score_field: (
                float,
                Field(description=f"the probability that it is {outcome.positive}"),
            ),
            outcome.decision_field: (
                bool,
                Field(description=f"{outcome.positive}: the probability reaches the threshold"),
            ),
            "threshold": (float, Field(description="the model's decision threshold")),
        }
    if target.kind == MULTICLASS:
        return {
            outcome.decision_field: (
                Literal[target.classes],  # type: ignore[valid-type]
                Field(description="the likeliest class"),
            ),
            outcome.score_field: (
                dict[str, float],
                Field(description=f"each class's probability ({', '.join(target.classes)})"),
            ),
        }
    low, high = interval_fields(outcome.score_field)
    bound = "bound of the prediction interval"
    return {
        outcome.score_field: (float, Field(description=f"the predicted value, in {target.unit}")),
        low: (float | None, Field(None, description=f"the lower {bound}, in {target.unit}")),
        high: (float | None, Field(None, description=f"the upper {bound}, in {target.unit}")),
    }


def response_models(usecase: UseCase) -> tuple[type[BaseModel], type[BaseModel]]:
    """(one prediction, the /predict response), for the use case's target and names."""
    prediction = create_model(
        "Prediction",
        __base__=PredictionBase,
        **answer_fields(usecase),
    )
    response = create_model(
        "PredictResponse",
        predictions=(list[prediction], ...),  # type: ignore[valid-type]
        model_version=(str, ...),
        answered_at=(datetime, ...),
    )
    return prediction, response
