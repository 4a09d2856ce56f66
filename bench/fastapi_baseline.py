"""The baseline for the serving benchmark: a plain FastAPI app doing what the BentoML service
does (same champion model file, same online feature read, same request features, same schema).

    FLIGHT_DELAY_MODEL_TAG=<tag> python -m uvicorn bench.fastapi_baseline:app --port 3001
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import mlflow
import numpy as np
import pandas as pd
from fastapi import Body, FastAPI
from pydantic import Field

from configs import load_settings
from features.definitions import build_repo
from features.online import online_features
from features.store import feature_store
from usecases.flight_delay import USECASE
from usecases.flight_delay.request import Flight, flights_frame
from usecases.flight_delay.rows import request_features

MAX_FLIGHTS_PER_REQUEST = USECASE.request.max_items

settings = load_settings()
stored = bentoml.models.get(os.environ["FLIGHT_DELAY_MODEL_TAG"])
model = mlflow.lightgbm.load_model(stored.path_of("mlflow_model"))
features = [str(name) for name in stored.info.metadata["features"]]  # type: ignore[union-attr]
threshold = float(str(stored.info.metadata["threshold"]))
version = str(stored.info.labels.get("mlflow_model_version"))
store = feature_store(settings)
service = store.get_feature_service(build_repo(settings).service.name)
app = FastAPI()


# async: handled one at a time on the event loop, no thread pool (the work is short and
# CPU-bound; threads only add contention on a 2-core machine).
@app.post("/predict")
async def predict(
    flights: Annotated[
        list[Flight], Field(min_length=1, max_length=MAX_FLIGHTS_PER_REQUEST), Body(embed=True)
    ],
) -> dict:
    frame = flights_frame(flights)
    request = request_features(frame, settings.params)
    online = online_features(store, service, USECASE, frame)
    inputs = pd.concat([request, online], axis=1)[features].astype("float64")
    scores = np.asarray(model.predict(inputs), dtype="float64")
    return {
        "predictions": [
            {"probability_late": float(s), "late": bool(s >= threshold), "model_version": version}
            for s in scores
        ]
    }
