"""The serving contract's response, shaped by the use case: per item, the score and the
decision under the use case's names, the threshold, the model version and what was missing.

The request's item type is the use case's own (`Request.item`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, create_model

from usecases.contract import UseCase


class PredictionBase(BaseModel):
    threshold: float
    model_version: str
    # Stored features with no usable value: the model treats them as missing.
    missing_features: list[str]
    # The prediction's id in the prediction log (what the monitor and lineage read).
    prediction_id: str


def response_models(usecase: UseCase) -> tuple[type[BaseModel], type[BaseModel]]:
    """(one prediction, the /predict response), named by the use case's outcome."""
    outcome = usecase.outcome
    fields: dict[str, Any] = {
        outcome.score_field: (float, ...),
        outcome.decision_field: (bool, ...),
    }
    prediction = create_model("Prediction", __base__=PredictionBase, **fields)
    response = create_model(
        "PredictResponse",
        predictions=(list[prediction], ...),  # type: ignore[valid-type]
        model_version=(str, ...),
        answered_at=(datetime, ...),
    )
    return prediction, response
