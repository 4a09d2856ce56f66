"""The prediction service: the champion model plus live features from Feast, for the use case
named in config.

One BentoML service class. The model is the exact version the Bento was built with (the
project's model-tag variable); features come from the online store through the same Feast
definitions and model-input assembly as training, so the two cannot drift apart. The request's
item type, its field name and the response's names are the use case's.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import pandas as pd
from pydantic import Field

import models
from configs import cloudwatch, handoff, load_settings
from features.definitions import service_name
from features.inputs import OnlineInputs
from features.online import OnlineStoreUnavailable
from features.store import feature_store
from models import explain
from models.answers import Answering, Answers, fields
from monitoring.log_writer import WriterProcess
from monitoring.prediction_log import (
    SERVICE_SOURCE,
    SHADOW_ID_SUFFIX,
    SHADOW_SOURCE,
    Batch,
    new_prediction_id,
)
from serving.figures import CountFigures, ReleaseFigures
from serving.gauges import GAUGES, MonitorGauges
from serving.guard import ApiKeys, JsonBodiesOnly, ShedLoad, api_keys
from serving.logs import RequestIds, use_json_logs
from serving.schemas import Explanation, response_models
from usecases.contract import EVENT_TIMESTAMP
from usecases.project import bind

# The use case checked against its settings (no Spark here: its Spark code is not resolved).
PROJECT = bind(load_settings(), resolve_references=False)
SETTINGS, USECASE = PROJECT.settings, PROJECT.usecase
NAMES = SETTINGS.names
MODEL_TAG_ENV = NAMES.model_tag_variable
MODEL_DIGEST = handoff.DIGEST_KEY
ITEMS = USECASE.request.items_field
# /predict's flag asking for each prediction's explanation.
EXPLAIN = "explain"
Prediction, PredictResponse = response_models(USECASE)
# /predict_batch: how long a request may wait for others to share its batch.
BATCH_MAX_LATENCY_MS = 1000
# The largest body the APIs read: 1,000 items of a few fields take about 200 kB as JSON;
# 1 MiB leaves room for formatting and escapes. Larger ones are refused (413) unparsed.
MAX_BODY_BYTES = 1 << 20
log = logging.getLogger("serving")
# The prediction routes (the APIs below).
API_PATHS = frozenset({"/predict", "/predict_batch"})
# This worker's figures for the canary alarms (`serving.figures`), when it publishes them.
FIGURES: ReleaseFigures | None = None
# BentoML 1.4.39 reads `model_fields` on the request model's instance for every request, which
# pydantic 2.11+ deprecates: that one warning is not ours to fix and must not cost a formatted
# log line per request.
warnings.filterwarnings(
    "ignore", message="Accessing the 'model_fields' attribute on the instance is deprecated"
)

PREDICTIONS = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_predictions_total",
    documentation="Items scored, by model version",
    labelnames=["model_version"],
)
DEFAULTED = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_defaulted_items_total",
    documentation="Items scored with at least one stored feature missing (the model treats it as missing)",
    labelnames=["model_version"],
)
REFUSED = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_refused_total",
    documentation="Requests refused at once (503, Retry-After) because the worker was at capacity",
)
FULL_GC_PAUSES = bentoml.metrics.Histogram(
    name=f"{NAMES.metric_prefix}_full_gc_pause_seconds",
    documentation="Full (generation 2) garbage collections of the worker, by how long they held it",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)
LOG_WRITTEN = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_prediction_log_written_total",
    documentation="Predictions written to the prediction log",
)
LOG_DROPPED = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_prediction_log_dropped_total",
    documentation="Predictions answered but not logged (buffer full, or a write failed)",
)
SHADOW_FAILURES = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_shadow_failures_total",
    documentation="Requests the shadow model (the challenger) failed to score; answered anyway",
)
MONITOR_GAUGES = {
    name: bentoml.metrics.Gauge(
        name=f"{NAMES.metric_prefix}_monitor_{name}",
        documentation=documentation,
        labelnames=list(labels),
    )
    for name, (labels, documentation) in GAUGES.items()
}
STORE_FAILURES = bentoml.metrics.Counter(
    name=f"{NAMES.metric_prefix}_online_store_failures_total",
    documentation="Requests answered 503 because the online store failed to answer",
    labelnames=["model_version"],
)


class ModelUnavailable(RuntimeError):
    """The model the service must serve is missing, unreadable or not the one described."""


def load_model(tag: str, path: str, features: list[str], digest: str | None) -> Any:
    """The model at `path` (any family), checked against the digest of its whole folder and
    the inputs recorded when it was packaged, before any library reads it (LightGBM aborts
    the process on a truncated file instead of raising).

    A missing or corrupt artifact stops the service from starting (so it never becomes
    ready), with a message saying which model and what to do.
    """
    folder = Path(path)
    rebuild = "rebuild the Bento with `python -m pipelines package`"
    if not (folder / models.MLMODEL).is_file():
        raise ModelUnavailable(
            f"model {tag} has no {models.MLMODEL} in {path}: the artifact is missing; {rebuild}"
        )
    if digest is None:
        log.warning("model %s carries no %s: its files cannot be checked", tag, MODEL_DIGEST)
    elif models.folder_digest(folder) != digest:
        raise ModelUnavailable(
            f"model {tag}: the files in {path} do not match the digest recorded when it was "
            f"packaged; the artifact is corrupt: {rebuild}"
        )
    try:
        model = models.load(folder)
    except Exception as err:  # a missing file, a truncated model, a bad MLmodel: all the same here
        raise ModelUnavailable(
            f"model {tag} cannot be loaded from {path} ({type(err).__name__}: {err}); the "
            f"artifact is missing or corrupt: {rebuild}"
        ) from err
    if model.features != features:
        raise ModelUnavailable(
            f"model {tag} takes {model.features} but its metadata says {features}: "
            "the artifact does not match its description"
        )
    return model


def served_model(tag: str) -> tuple[Any, str, list[str], Answering, Any]:
    """BentoML model `tag` loaded and checked: (its store entry, its MLflow version, the
    inputs it takes, how its predictions become answers, the model)."""
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ModelUnavailable(
            f"model {tag} is not in the BentoML store ({os.environ.get('BENTOML_HOME')}): "
            "rebuild the Bento with `python -m pipelines package`"
        ) from None
    metadata = stored.info.metadata
    version = str(stored.info.labels.get(handoff.VERSION_LABEL, stored.tag.version))
    features = [str(name) for name in metadata[handoff.FEATURES_KEY]]  # type: ignore[union-attr]
    model = load_model(
        tag,
        stored.path_of(handoff.MLFLOW_MODEL_DIR),
        features,
        str(metadata[MODEL_DIGEST]) if MODEL_DIGEST in metadata else None,  # type: ignore[operator]
    )
    return stored, version, features, Answering.from_metadata(metadata), model  # type: ignore[arg-type]


@dataclass(frozen=True)
class Shadow:
    """The challenger scored beside the champion: its own inputs' assembly when it takes
    other features than the champion (else None: the champion's are used), its own log."""

    version: str
    features: list[str]
    answering: Answering
    model: Any
    inputs: OnlineInputs | None
    log: WriterProcess | None


_full_gc_started = [0.0]


def _time_full_collection(phase: str, info: dict[str, int]) -> None:
    """A `gc.callbacks` hook that records how long each full collection held the worker: the
    tail latency of a Python service is where they land (the young generations' collections
    take microseconds and are not timed, to keep the hook off the request path)."""
    if info["generation"] != 2:
        return
    if phase == "start":
        _full_gc_started[0] = time.perf_counter()
    else:
        FULL_GC_PAUSES.observe(time.perf_counter() - _full_gc_started[0])


def _api(method: Any, name: str, returns: Any, explains: bool = False) -> Any:
    """`method(self, items)` as the API `name` (its route), with the signature BentoML reads:
    one parameter named as the use case's items field, typed as a list of its request item,
    and (`explains`) an optional `explain` flag, passed on as `method(self, items, explain)`."""
    items = Annotated[
        list[USECASE.request.item],  # type: ignore[name-defined]
        Field(min_length=1, max_length=USECASE.request.max_items),
    ]
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(ITEMS, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=items),
    ]
    if explains:
        flag = Annotated[
            bool,
            Field(description="with each prediction, the inputs that moved it most (SHAP values)"),
        ]
        parameters.append(
            inspect.Parameter(
                EXPLAIN, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=flag, default=False
            )
        )

    def api(self: Any, *args: Any, **kwargs: Any) -> Any:
        given = kwargs[ITEMS] if ITEMS in kwargs else args[0]
        if explains:
            return method(
                self, given, bool(kwargs.get(EXPLAIN, args[1] if len(args) > 1 else False))
            )
        return method(self, given)

    api.__name__ = api.__qualname__ = name
    api.__doc__ = method.__doc__
    api.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=returns
    )
    return api


@bentoml.service(
    name=NAMES.bento,
    traffic={
        "timeout": SETTINGS.serving.timeout_s,
        "max_concurrency": SETTINGS.serving.max_concurrency,
    },
    workers=SETTINGS.serving.workers,
    # An OpenTelemetry span per prediction costs more than the prediction itself at a few
    # hundred requests per second: the API routes are traced only when asked for
    # (`serving.trace_requests`); their log lines keep a request id either way (RequestIds).
    tracing={} if SETTINGS.serving.trace_requests else {"excluded_urls": sorted(API_PATHS)},
    logging={"access": {"enabled": SETTINGS.serving.access_log}},
)
class PredictionService:
    def __init__(self) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # Loaded again: a worker's environment (MLOPS_OVERRIDES) may differ from the importer's.
        project = bind(load_settings(), resolve_references=False)
        self.settings, self.usecase = project.settings, project.usecase
        tag = os.environ.get(MODEL_TAG_ENV)
        if not tag:
            raise RuntimeError(
                f"{MODEL_TAG_ENV} is not set: serve a Bento built by `python -m pipelines package`"
            )
        stored, self.model_version, self.features, self.answering, self.model = served_model(tag)
        use_json_logs(self.model_version)
        self.score_field = self.usecase.outcome.score_field
        self.decision_field = self.usecase.outcome.decision_field
        self.answered_with = self.answering.shown
        self.store = feature_store(self.settings, online_only=True)
        self.service = self.store.get_feature_service(service_name(self.settings))
        self.materialized = False  # see `unmaterialized`
        self.inputs = OnlineInputs(
            self.store, self.service, self.usecase, self.settings.params, self.features
        )
        self.row_id = self.usecase.examples.row_id
        self.prediction_log = self._prediction_log(self.features, SERVICE_SOURCE)
        self.shadow = self._shadow(os.environ.get(NAMES.shadow_model_tag_variable))
        if self.settings.serving.canary.publish_figures:
            global FIGURES
            FIGURES = ReleaseFigures(
                self.settings.names.cloudwatch_namespace,
                self.settings.usecase,
                os.environ.get(cloudwatch.RELEASE_VARIABLE, "unknown"),
                self.settings.serving.canary.publish_interval_s,
            )
        self.monitor_gauges = MonitorGauges(
            self.settings.paths.monitoring,
            MONITOR_GAUGES,
            self.settings.monitoring.gauges_refresh_s,
        ).start()
        log.info(
            "serving model version %s with %d features",
            self.model_version,
            len(self.features),
            extra={"bentoml_model": str(stored.tag), "feature_service": self.service.name},
        )
        self._prepare_explanations()
        # Everything loaded so far (libraries, model, registry) lives as long as the worker:
        # moved out of the collector's view, full collections no longer walk it on a request.
        gc.collect()
        gc.freeze()
        if _time_full_collection not in gc.callbacks:
            gc.callbacks.append(_time_full_collection)

    def _prediction_log(self, features: list[str], source: str) -> WriterProcess | None:
        logged = self.settings.monitoring.prediction_log
        if not logged.enabled:
            return None
        return WriterProcess(
            location=self.settings.paths.prediction_log,
            features=features,
            source=source,
            capacity=logged.capacity,
            flush_rows=logged.flush_rows,
            flush_interval_s=logged.flush_interval_s,
            # late-bound: BentoML makes its metrics in the worker
            on_dropped=lambda count: LOG_DROPPED.inc(count),
            on_written=lambda count: LOG_WRITTEN.inc(count),
        ).start()

    def _shadow(self, tag: str | None) -> Shadow | None:
        """The challenger scored in shadow (`serving.shadow_challenger`; the Bento names it),
        or None. Its inputs come from the same online read when it takes the champion's."""
        if not tag:
            return None
        _, version, features, answering, model = served_model(tag)
        log_ = self._prediction_log(features, SHADOW_SOURCE)
        same = features == self.features
        inputs = (
            None
            if same
            else OnlineInputs(
                self.store, self.service, self.usecase, self.settings.params, features
            )
        )
        log.info("scoring model version %s in shadow", version)
        return Shadow(version, features, answering, model, inputs, log_)

    @bentoml.on_shutdown
    def close_prediction_log(self) -> None:
        """On SIGTERM (a deploy, a scale-in): write what the prediction logs still hold."""
        self.monitor_gauges.stop()
        for logged in (self.prediction_log, self.shadow.log if self.shadow else None):
            if logged is not None:
                logged.close()

    def vectors(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[list[str]]]:
        """Model inputs for entity `rows` (online + request features, the model's columns)
        and what was missing: the request path, for a frame of entity rows."""
        inputs, missing = self.inputs(rows.to_dict("records"))
        return pd.DataFrame(inputs, columns=self.features, index=rows.index), missing

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded, the online store answers a read, and it holds the
        champion's features: every view the model reads has been materialized into it (the
        registry records each materialization). An empty store would answer every request
        with all stored features missing; not ready, a load balancer sends it no traffic."""
        try:
            self.store.get_online_features(
                features=self.service,
                entity_rows=[dict(self.usecase.request.probe_row)],
            )
            empty = self.unmaterialized()
        except Exception:  # any failure of the store means "not ready", never a crash
            log.warning("online store not answering", exc_info=True)
            return False
        if empty:
            log.warning(
                "not ready: nothing materialized into the online store for %s; run "
                "`python -m pipelines materialize`",
                ", ".join(empty),
            )
            return False
        return self.model is not None

    def unmaterialized(self) -> list[str]:
        """The views the model reads that the registry records no materialization of. Until
        all are, each call reads the registry afresh (materialize may just have run); then
        the answer is kept, since a materialization is never taken back."""
        if self.materialized:
            return []
        views = [projection.name for projection in self.service.feature_view_projections]
        empty = [
            name
            for name in views
            if not self.store.get_feature_view(
                name, allow_registry_cache=False
            ).materialization_intervals
        ]
        self.materialized = not empty
        return empty

    def _require_materialized(self) -> None:
        """Readiness inside the service, not only on `/readyz`: the load balancer checks
        liveness (a store failover must not get healthy tasks replaced), so a request that
        arrives while the store holds none of the champion's features is refused (503), not
        answered with every stored feature missing. Free once every view is materialized."""
        if self.materialized:
            return
        try:
            empty = self.unmaterialized()
        except Exception as err:  # the registry or the store failing: the store's 503
            raise OnlineStoreUnavailable(f"{type(err).__name__}: {err}") from err
        if empty:
            raise bentoml.exceptions.ServiceUnavailable(
                "the online feature store holds no features yet for "
                f"{', '.join(empty)}; retry later"
            )

    def score(self, items: list[Any], explain: bool = False) -> list[Any]:
        """Predictions for `items`, in order (`explain`: each with its explanation); a failing
        online store becomes a 503."""
        row = self.usecase.request.row
        rows = [row(item) for item in items]
        try:
            self._require_materialized()
            inputs, missing = self.inputs(rows)
        except OnlineStoreUnavailable as err:
            STORE_FAILURES.labels(model_version=self.model_version).inc()
            log.error("online store failed: %s", err, exc_info=True)
            raise bentoml.exceptions.ServiceUnavailable(
                "the online feature store is not answering; retry later"
            ) from None
        answers = self.answering.answer(self.model.predict(inputs))
        version, answered_with = self.model_version, self.answered_with
        ids = [new_prediction_id() for _ in answers.score]
        # Built from values of the types the response declares (Python floats, bools, str):
        # validating them again would only cost time on every request.
        predictions = [
            Prediction.model_construct(
                **answer,
                **answered_with,
                model_version=version,
                missing_features=absent,
                prediction_id=prediction_id,
            )
            for answer, absent, prediction_id in zip(
                fields(answers, self.score_field, self.decision_field), missing, ids, strict=True
            )
        ]
        if explain:
            self._explain(predictions, inputs)
        if self.prediction_log is not None:
            self._log(self.prediction_log, ids, rows, inputs, answers, missing)
        if FIGURES is not None:
            FIGURES.scored(answers.score)
        if self.shadow is not None:
            self._score_in_shadow(self.shadow, ids, rows, inputs, missing)
        defaulted = sum(1 for absent in missing if absent)
        PREDICTIONS.labels(model_version=version).inc(len(predictions))
        DEFAULTED.labels(model_version=version).inc(defaulted)
        # DEBUG: every prediction is in the prediction log already (`serving.access_log` for
        # a line per request).
        log.debug(
            "predicted %d item(s)",
            len(predictions),
            extra={
                "items": len(predictions),
                "flagged": sum(answers.decision or ()),
                "defaulted_items": defaulted,
            },
        )
        return predictions

    def _prepare_explanations(self) -> None:
        """Explain one row now, before the worker is ready: a scikit-learn model's first
        explanation compiles SHAP's numba code (about 5 s here), which would otherwise fall on
        the first request that asks for one, in every worker."""
        started = time.perf_counter()
        try:
            self.model.contributions(np.zeros((1, len(self.features))))
        except models.ModelError as err:  # a model saved before explanations: none on request
            log.warning("explanations unavailable: %s", err)
            return
        log.info("explanations ready in %.1f s", time.perf_counter() - started)

    def _explain(self, predictions: list[Any], inputs: Any) -> None:
        """Each prediction's largest contributions (`serving.explain_top`), the sum of the
        others and the base: they add up to the model's output (`models.explain`)."""
        matrix = np.asarray(inputs, dtype="float64")
        contributions = self.model.contributions(matrix)
        count = self.settings.serving.explain_top
        for row, prediction in enumerate(predictions):
            prediction.explanation = Explanation(**explain.top(contributions, matrix, row, count))

    def _score_in_shadow(
        self,
        shadow: Shadow,
        ids: list[str],
        rows: list[dict[str, Any]],
        inputs: Any,
        missing: list[list[str]],
    ) -> None:
        """Score the challenger on the same items and log it (never the client's answer); a
        failure is counted and logged, never raised."""
        try:
            if shadow.inputs is not None:
                inputs, missing = shadow.inputs(rows)
            answers = shadow.answering.answer(shadow.model.predict(inputs))
            if shadow.log is not None:
                shadow_ids = [f"{prediction_id}{SHADOW_ID_SUFFIX}" for prediction_id in ids]
                self._log(
                    shadow.log, shadow_ids, rows, inputs, answers, missing, version=shadow.version
                )
        except Exception:  # the challenger must never cost a client its answer
            SHADOW_FAILURES.inc()
            log.warning("shadow model version %s failed", shadow.version, exc_info=True)

    def _log(
        self,
        prediction_log: WriterProcess,
        ids: list[str],
        rows: list[dict[str, Any]],
        inputs: Any,  # the model's input matrix: one row per prediction
        answers: Answers,
        missing: list[list[str]],
        version: str | None = None,
    ) -> None:
        """Hand predictions to the prediction log's writer process (never waits on it); the
        champion's version unless told otherwise."""
        row_id = self.row_id
        prediction_log.log(
            Batch(
                ids,
                time.time(),
                [entity[EVENT_TIMESTAMP] for entity in rows],
                self.model_version if version is None else version,
                [None if entity.get(row_id) is None else str(entity[row_id]) for entity in rows],
                answers,
                missing,
                inputs,
            )
        )

    def _predict(self, items: list[Any], explain: bool = False) -> Any:
        return PredictResponse(
            predictions=self.score(items, explain),
            model_version=self.model_version,
            answered_at=datetime.now(UTC),
        )

    def _predict_batch(self, items: list[Any]) -> list[Any]:
        """The same predictions with adaptive batching: concurrent requests are merged into
        one feature read and one model call, then split again; the answer is the list of
        predictions alone (each carries the model version)."""
        return self.score(items)

    predict = bentoml.api(_api(_predict, "predict", PredictResponse, explains=True))
    predict_batch = bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=USECASE.request.max_items,
        max_latency_ms=BATCH_MAX_LATENCY_MS,
    )(_api(_predict_batch, "predict_batch", list[Prediction]))  # type: ignore[valid-type]


# Outermost first: a request without an accepted API key (when the service has keys: opened
# to the internet on AWS) is refused before it takes a place in the queue; past capacity a
# request is refused before anything reads it; then client mistakes in the body itself (not
# JSON, too large) are answered 415/413 before BentoML's parser sees them. See serving/guard.py.
# Outermost of all: every answer of the API counts in the release's figures (the canary alarms).
PredictionService.add_asgi_middleware(  # type: ignore[attr-defined]  # a bentoml Service
    CountFigures, paths=API_PATHS, figures=lambda: FIGURES
)
PredictionService.add_asgi_middleware(  # type: ignore[attr-defined]
    ApiKeys, paths=API_PATHS, keys=api_keys()
)
PredictionService.add_asgi_middleware(  # type: ignore[attr-defined]
    ShedLoad,
    paths=API_PATHS,
    max_queue_s=SETTINGS.serving.max_queue_ms / 1000,
    overload_queue_s=SETTINGS.serving.overload_queue_ms / 1000,
    retry_after_s=SETTINGS.serving.retry_after_s,
    on_refused=lambda: REFUSED.inc(),  # late-bound: BentoML makes its metrics in the worker
)
PredictionService.add_asgi_middleware(  # type: ignore[attr-defined]
    JsonBodiesOnly, paths=API_PATHS, max_bytes=MAX_BODY_BYTES
)
PredictionService.add_asgi_middleware(RequestIds, paths=API_PATHS)  # type: ignore[attr-defined]
