"""The baseline for the serving benchmark: a plain FastAPI app doing what the BentoML service
does (same champion model folder, same model-input assembly from the online store, same
request schema and answer), with none of the serving framework around it.

    <PROJECT>_MODEL_TAG=<tag> python -m uvicorn bench.fastapi_baseline:app --port 3001
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import bentoml
from fastapi import Body, FastAPI
from pydantic import Field

import models
from configs import handoff, load_settings
from features.definitions import service_name
from features.inputs import OnlineInputs
from features.store import feature_store
from models.answers import Answering, fields
from usecases import load as load_usecase

settings = load_settings()
USECASE = load_usecase(settings.usecase)
stored = bentoml.models.get(os.environ[settings.names.model_tag_variable])
features = [str(name) for name in stored.info.metadata[handoff.FEATURES_KEY]]  # type: ignore[union-attr]
model = models.load(Path(stored.path_of(handoff.MLFLOW_MODEL_DIR)))
answering = Answering.from_metadata(stored.info.metadata)  # type: ignore[arg-type]
answered_with = answering.shown
version = str(stored.info.labels.get(handoff.VERSION_LABEL))
store = feature_store(settings, online_only=True)
inputs = OnlineInputs(
    store, store.get_feature_service(service_name(settings)), USECASE, settings.params, features
)
score_field, decision_field = USECASE.outcome.score_field, USECASE.outcome.decision_field
app = FastAPI()


# async: handled one at a time on the event loop, no thread pool (the work is short and
# CPU-bound; threads only add contention on a 2-core machine).
@app.post("/predict")
async def predict(
    items: Annotated[
        list[USECASE.request.item],  # type: ignore[name-defined]
        Field(min_length=1, max_length=USECASE.request.max_items),
        Body(embed=True, alias=USECASE.request.items_field),
    ],
) -> dict:
    vectors, missing = inputs([USECASE.request.row(item) for item in items])
    answers = answering.answer(model.predict(vectors))
    return {
        "predictions": [
            {
                **answer,
                **answered_with,
                "model_version": version,
                "missing_features": absent,
            }
            for answer, absent in zip(
                fields(answers, score_field, decision_field), missing, strict=True
            )
        ],
        "model_version": version,
    }
