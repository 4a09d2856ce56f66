"""The flight-delay prediction service: the champion model plus live features from Feast.

One BentoML service class. The model is the exact version the Bento was built with
(FLIGHT_DELAY_MODEL_TAG); features come from the online store through the same Feast
definitions and request-feature code as training, so the two cannot drift apart.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
import mlflow
import numpy as np
import pandas as pd
from pydantic import Field

from configs import load_settings
from features.definitions import declared_feature_names, service_name
from features.online import OnlineStoreUnavailable, online_features
from features.request import request_features
from features.store import feature_store
from serving.guard import JsonBodiesOnly
from serving.logs import use_json_logs
from serving.schemas import (
    MAX_FLIGHTS_PER_REQUEST,
    Flight,
    Prediction,
    PredictResponse,
    flights_frame,
)

MODEL_TAG_ENV = "FLIGHT_DELAY_MODEL_TAG"
MODEL_FILE = "model.lgb"  # as pipelines.package records it
MODEL_DIGEST = "model_sha256"
# /predict_batch: how long a request may wait for others to share its batch.
BATCH_MAX_LATENCY_MS = 1000
# The largest body the APIs read: 1,000 flights take about 200 kB as JSON; 1 MiB leaves room
# for formatting and escapes. Larger ones are refused (413) before they are parsed.
MAX_BODY_BYTES = 1 << 20
log = logging.getLogger("serving")

PREDICTIONS = bentoml.metrics.Counter(
    name="flight_delay_predictions_total",
    documentation="Flights scored, by model version",
    labelnames=["model_version"],
)
DEFAULTED = bentoml.metrics.Counter(
    name="flight_delay_defaulted_flights_total",
    documentation="Flights scored with at least one online feature missing (the model treats it as missing)",
    labelnames=["model_version"],
)
STORE_FAILURES = bentoml.metrics.Counter(
    name="flight_delay_online_store_failures_total",
    documentation="Requests answered 503 because the online store failed to answer",
    labelnames=["model_version"],
)


class ModelUnavailable(RuntimeError):
    """The model the service must serve is missing, unreadable or not the one described."""


def load_booster(tag: str, path: str, features: list[str], digest: str | None) -> Any:
    """The LightGBM booster at `path`, checked against the digest and the inputs its metadata
    recorded when it was packaged.

    The native booster, not the pyfunc wrapper: missing online features are NaN by design, and
    LightGBM routes them as it learned to. A missing or corrupt artifact stops the service from
    starting (so it never becomes ready), with a message saying which model and what to do.
    """
    model_file = Path(path) / MODEL_FILE
    if not model_file.is_file():
        raise ModelUnavailable(
            f"model {tag} has no {MODEL_FILE} in {path}: the artifact is missing; "
            "rebuild the Bento with `python -m pipelines package`"
        )
    if digest is None:
        log.warning("model %s carries no %s: its file cannot be checked", tag, MODEL_DIGEST)
    elif hashlib.sha256(model_file.read_bytes()).hexdigest() != digest:
        # Checked before LightGBM reads it: LightGBM aborts the process on a truncated file.
        raise ModelUnavailable(
            f"model {tag}: {model_file} does not match the digest recorded when it was "
            "packaged; the artifact is corrupt: rebuild the Bento with `python -m pipelines package`"
        )
    try:
        booster = mlflow.lightgbm.load_model(path)
    except Exception as err:  # a missing file, a truncated model, a bad MLmodel: all the same here
        raise ModelUnavailable(
            f"model {tag} cannot be loaded from {path} ({type(err).__name__}: {err}); the "
            "artifact is missing or corrupt: rebuild the Bento with `python -m pipelines package`"
        ) from err
    if list(booster.feature_name()) != features:
        raise ModelUnavailable(
            f"model {tag} takes {booster.feature_name()} but its metadata says {features}: "
            "the artifact does not match its description"
        )
    return booster


@bentoml.service(
    name="flight_delay_service",
    traffic={"timeout": 10, "max_concurrency": 64},
    workers=1,
)
class FlightDelayService:
    def __init__(self) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.settings = load_settings()
        tag = os.environ.get(MODEL_TAG_ENV)
        if not tag:
            raise RuntimeError(
                f"{MODEL_TAG_ENV} is not set: serve a Bento built by `python -m pipelines package`"
            )
        try:
            stored = bentoml.models.get(tag)
        except bentoml.exceptions.NotFound:
            raise ModelUnavailable(
                f"model {tag} is not in the BentoML store ({os.environ.get('BENTOML_HOME')}): "
                "rebuild the Bento with `python -m pipelines package`"
            ) from None
        metadata = stored.info.metadata
        self.model_version = str(stored.info.labels.get("mlflow_model_version", stored.tag.version))
        use_json_logs(self.model_version)
        self.features: list[str] = [str(name) for name in metadata["features"]]  # type: ignore[union-attr]
        self.threshold = float(str(metadata["threshold"]))
        self.model = load_booster(
            tag,
            stored.path_of("mlflow_model"),
            self.features,
            str(metadata[MODEL_DIGEST]) if MODEL_DIGEST in metadata else None,  # type: ignore[operator]
        )
        self.store = feature_store(self.settings, online_only=True)
        self.service = self.store.get_feature_service(service_name(self.settings))
        log.info(
            "serving model version %s with %d features",
            self.model_version,
            len(self.features),
            extra={"bentoml_model": str(stored.tag), "feature_service": self.service.name},
        )
        # Everything loaded so far (libraries, model, registry) lives as long as the worker:
        # moved out of the collector's view, full collections no longer walk it on a request.
        gc.collect()
        gc.freeze()

    def vectors(self, flights: pd.DataFrame) -> tuple[pd.DataFrame, list[list[str]]]:
        """Model inputs for `flights` (online features + request features) and what was missing."""
        online = online_features(self.store, self.service, flights)
        request = request_features(
            flights,
            carriers=self.settings.features.carriers,
            origins=list(self.settings.features.origin_timezones),
            origin_timezones=self.settings.features.origin_timezones,
        )
        frame = pd.concat([request, online], axis=1)
        inputs = frame[self.features].astype("float64")
        absent = frame[declared_feature_names()].isna()
        missing = [[name for name, gone in row.items() if gone] for _, row in absent.iterrows()]
        return inputs, missing

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded and the online store answers a read."""
        try:
            self.store.get_online_features(
                features=self.service,
                entity_rows=[
                    {
                        "tailnum": "READYZ",
                        "origin": "READYZ",
                        "carrier": "READYZ",
                        "route": "READYZ",
                    }
                ],
            )
        except Exception:  # any failure of the store means "not ready", never a crash
            log.warning("online store not answering", exc_info=True)
            return False
        return self.model is not None

    def score(self, flights: list[Flight]) -> list[Prediction]:
        """Predictions for `flights`, in order; a failing online store becomes a 503."""
        frame = flights_frame(flights)
        try:
            inputs, missing = self.vectors(frame)
        except OnlineStoreUnavailable as err:
            STORE_FAILURES.labels(model_version=self.model_version).inc()
            log.error("online store failed: %s", err, exc_info=True)
            raise bentoml.exceptions.ServiceUnavailable(
                "the online feature store is not answering; retry later"
            ) from None
        scores = np.asarray(self.model.predict(inputs), dtype="float64")
        predictions = [
            Prediction(
                probability_late=float(score),
                late=bool(score >= self.threshold),
                threshold=self.threshold,
                model_version=self.model_version,
                missing_features=absent,
            )
            for score, absent in zip(scores, missing, strict=True)
        ]
        PREDICTIONS.labels(model_version=self.model_version).inc(len(predictions))
        DEFAULTED.labels(model_version=self.model_version).inc(
            sum(1 for absent in missing if absent)
        )
        log.info(
            "predicted %d flight(s)",
            len(predictions),
            extra={
                "flights": len(predictions),
                "flagged_late": sum(p.late for p in predictions),
                "defaulted_flights": sum(1 for absent in missing if absent),
            },
        )
        return predictions

    @bentoml.api
    def predict(
        self,
        flights: Annotated[list[Flight], Field(min_length=1, max_length=MAX_FLIGHTS_PER_REQUEST)],
    ) -> PredictResponse:
        return PredictResponse(
            predictions=self.score(flights),
            model_version=self.model_version,
            answered_at=datetime.now(UTC),
        )

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=MAX_FLIGHTS_PER_REQUEST,
        max_latency_ms=BATCH_MAX_LATENCY_MS,
    )
    def predict_batch(
        self,
        flights: Annotated[list[Flight], Field(min_length=1, max_length=MAX_FLIGHTS_PER_REQUEST)],
    ) -> list[Prediction]:
        """The same predictions with adaptive batching: concurrent requests are merged into
        one feature read and one model call, then split again; the answer is the list of
        predictions alone (each carries the model version)."""
        return self.score(flights)


# Client mistakes in the body itself (not JSON, too large) answered 415/413 before BentoML's
# parser sees them; see serving/guard.py.
FlightDelayService.add_asgi_middleware(  # type: ignore[attr-defined]  # a bentoml Service
    JsonBodiesOnly, paths=frozenset({"/predict", "/predict_batch"}), max_bytes=MAX_BODY_BYTES
)
