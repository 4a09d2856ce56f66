"""The only module that talks to the MLflow tracking server: runs, the model registry, aliases
and promotions, for the batch stages and the service alike. (A model family writes and reads its
model in MLflow's format, its flavor, and logs it into the run this module opened.)

The registry is the source of truth for which model serves: the `champion` alias. Every
decision of the promotion gate is written on the model version as tags, so the history of
promotions can be queried from MLflow itself (`python -m pipelines promotions`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from configs import handoff
from configs.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = handoff.ALIAS
CHALLENGER = handoff.CHALLENGER_ALIAS
# Tags written on a model version by the gate.
DECISION = "gate.decision"  # promoted | not_promoted | rolled_back_to
DECIDED_AT = "gate.decided_at"
REASON = "gate.reason"
EVIDENCE = "gate.evidence"  # JSON: the metrics that decided
PREVIOUS_CHAMPION = "gate.previous_champion"


class TrackingUnavailable(RuntimeError):
    """The tracking server or registry cannot be reached (a stage fails with this message)."""


def tracking_errors() -> tuple[type[BaseException], ...]:
    """What the MLflow client raises when its server or store fails (not a bug of ours)."""
    import requests
    from mlflow.exceptions import MlflowException

    return (MlflowException, requests.RequestException, OSError)


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class Tracker:
    """The registry and runs of the project's experiment. Constructing one makes no network
    call: the first use checks that MLflow answers (and the credentials), with a clear error."""

    def __init__(self, settings: Settings) -> None:
        config = settings.mlflow
        import mlflow
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if os.environ.get("MLFLOW_TRACKING_PASSWORD"):  # the servers' admin user by default
            os.environ.setdefault("MLFLOW_TRACKING_USERNAME", "admin")
        # Read by the client at each request (its HTTP session is cached per value).
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.request_retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(config.request_backoff_s)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(config.request_timeout_s)
        if config.tracking_uri.startswith("sqlite:///"):
            Path(config.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.config = config
        self.registered_model = settings.names.registered_model
        self.mlflow = mlflow
        mlflow.set_tracking_uri(config.tracking_uri)
        mlflow.set_registry_uri(config.tracking_uri)
        self._client = MlflowClient(
            tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri
        )
        self._experiment = settings.names.experiment

    @cached_property
    def experiment_id(self) -> str:
        """The experiment's id (created on first use): the first call that reaches MLflow."""
        config = self.config
        try:
            experiment = self._client.get_experiment_by_name(self._experiment)
            if experiment is None:
                return str(
                    self._client.create_experiment(
                        self._experiment, artifact_location=_as_uri(config.artifact_location)
                    )
                )
            return str(experiment.experiment_id)
        except Exception as err:  # the client raises many kinds; all mean "cannot track"
            if re.search(r"error code 40[13]\b", str(err)):
                raise TrackingUnavailable(
                    f"MLflow at {config.tracking_uri} refused the credentials: export "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the server's account)"
                ) from err
            raise TrackingUnavailable(
                f"MLflow at {config.tracking_uri} is not reachable: {err}"
            ) from err

    @property
    def client(self) -> Any:
        """MLflow's client, once MLflow has answered (see `experiment_id`)."""
        _ = self.experiment_id
        return self._client

    # -- registry -------------------------------------------------------------------------
    def _ref(self, version: Any) -> ModelRef:
        return ModelRef(
            version.name, str(version.version), version.run_id, dict(version.tags or {})
        )

    def version(self, number: str) -> ModelRef:
        return self._ref(self.client.get_model_version(self.registered_model, number))

    def alias(self, alias: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version_by_alias(self.registered_model, alias))
        except MlflowException:
            return None

    def champion(self, version: str | None = None) -> ModelRef | None:
        """The champion: the version a chain run already resolved, else the alias's now."""
        return self.version(version) if version else self.alias(CHAMPION)

    def versions(self) -> list[ModelRef]:
        found = self.client.search_model_versions(f"name = '{self.registered_model}'")
        return sorted((self._ref(v) for v in found), key=lambda ref: int(ref.version))

    def versions_of_run(self, run_id: str) -> list[ModelRef]:
        found = self.client.search_model_versions(
            f"name = '{self.registered_model}' and run_id = '{run_id}'"
        )
        return [self._ref(v) for v in found]

    def discard_versions_of_run(self, run_id: str) -> list[str]:
        """Delete the versions registered from a run that failed; returns their numbers."""
        gone = []
        for ref in self.versions_of_run(run_id):
            self.client.delete_model_version(self.registered_model, ref.version)
            gone.append(ref.version)
        return gone

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.registered_model, alias, version)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.registered_model, version, key, value)

    def run_record(self, run_id: str) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
        """A run's metrics, params and tags."""
        data = self.client.get_run(run_id).data
        return dict(data.metrics), dict(data.params), dict(data.tags)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def download(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        _ = self.experiment_id
        destination.mkdir(parents=True, exist_ok=True)
        return Path(
            self.mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=str(destination)
            )
        )

    def artifacts(self, run_id: str, folder: str) -> list[str]:
        """The names of the files the run holds under `folder` (none: an empty list)."""
        _ = self.experiment_id
        return [Path(item.path).name for item in self.client.list_artifacts(run_id, folder)]

    def download_model(self, ref: ModelRef, destination: Path) -> Path:
        """The version's MLflow model folder, copied under `destination`."""
        _ = self.experiment_id
        return Path(
            self.mlflow.artifacts.download_artifacts(
                artifact_uri=ref.uri, dst_path=str(destination)
            )
        )

    def load_model(self, ref: ModelRef) -> Any:
        """The version's model, through its family (models.load)."""
        import models

        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            return models.load(self.download_model(ref, Path(tmp)))

    def load_answering_model(self, ref: ModelRef) -> tuple[Any, Any]:
        """The version's model and how its predictions become answers
        (`models.answers.Answering`, from the model's metadata)."""
        import models
        from models.answers import Answering

        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            folder = self.download_model(ref, Path(tmp))
            return models.load(folder), Answering.from_metadata(models.metadata_of(folder))

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Add the files of `folder` to a finished run (e.g. its report)."""
        self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)

    def monitoring_run(self, name: str, metrics: dict[str, float], tags: dict[str, str]) -> str:
        """A run of the `<experiment>-monitoring` experiment (made on first use) holding one
        monitor's figures; returns its id."""
        experiment = f"{self._experiment}-monitoring"
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(
                experiment, artifact_location=_as_uri(self.config.artifact_location)
            )
        )
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        for key, value in metrics.items():
            self.client.log_metric(run.info.run_id, key, value)
        self.client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    @contextmanager
    def training_run(self) -> Iterator[RunRecorder]:
        """A new run of the experiment, recorded while the block runs."""
        with self.mlflow.start_run(experiment_id=self.experiment_id) as active:
            yield RunRecorder(self, active.info.run_id)


class RunRecorder:
    """What a training run records: params, metrics, tags, files, the model, its version."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id

    def log(self, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> None:
        mlflow = self.tracker.mlflow
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)

    def log_training_set(self, frame: Any, label: str, source: str) -> None:
        """Record the training set as the run's input (MLflow's dataset tracking: its digest,
        schema and size, and where it was read from)."""
        mlflow = self.tracker.mlflow
        dataset = mlflow.data.from_pandas(
            frame, source=source, targets=label, name="training_set", digest=frame_digest(frame)
        )
        # Given, so MLflow does not infer it again element by element (see `frame_schema`).
        dataset.__dict__["schema"] = frame_schema(frame)
        mlflow.log_input(dataset, context="training")

    def log_trials(self, study: Any) -> None:
        """Each trial of a tuning study (`models.tuning.Study`) as a nested run of this one:
        the values it tried, its validation metric and its fit."""
        mlflow = self.tracker.mlflow
        for trial in study.trials:
            with mlflow.start_run(
                experiment_id=self.tracker.experiment_id,
                run_name=f"trial-{trial.number}",
                nested=True,
            ):
                mlflow.log_params(
                    {"trial": trial.number, **(trial.values or {"configured": "as configured"})}
                )
                mlflow.log_metrics(
                    {f"validation_{study.metric}": trial.score, "seconds": trial.seconds}
                )
                mlflow.set_tags(
                    {"tuning.fit": trial.summary, "tuning.best": str(trial == study.best)}
                )

    def log_files(self, paths: list[Path], artifact_path: str) -> None:
        for path in paths:
            self.tracker.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_model(self, model: Any, inputs: Any, scores: Any, metadata: dict[str, Any]) -> str:
        """Log a fitted model (any family) with a signature inferred from `inputs` and
        `scores`; returns its model URI."""
        from mlflow.models import ModelSignature, infer_signature

        info = model.log(
            # Inferred from every row given, so inputs that can be missing are marked optional.
            signature=ModelSignature(
                inputs=frame_schema(inputs), outputs=infer_signature(None, scores).outputs
            ),
            input_example=inputs.head(5),
            metadata=metadata,
        )
        return str(info.model_uri)

    def register(self, model_uri: str, tags: dict[str, str]) -> str:
        """Register the model as a new version, with its tags in the same call; returns it."""
        registered = self.tracker.mlflow.register_model(
            model_uri, self.tracker.registered_model, tags=tags
        )
        return str(registered.version)


def frame_schema(frame: Any) -> Any:
    """MLflow's schema of a pandas frame, as `mlflow.models.infer_signature` infers it from
    every row (a column with a missing value is optional), without its pass in Python over
    each value of each column: about 13 s for a year of flights, a third of training
    (BENCHMARKS.md, step 4). The types are MLflow's own, inferred from the few rows that hold
    each column's first value; whether a column is required, from every row, vectorised.
    """
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    present = frame.notna().to_numpy()
    firsts = {int(np.argmax(column)) for column in present.T if column.any()}
    sample = frame.iloc[sorted(firsts | {0})]
    missing = frame.isna().any()
    return Schema(
        [
            ColSpec(type=spec.type, name=spec.name, required=not bool(missing[spec.name]))
            for spec in infer_signature(sample).inputs.inputs
        ]
    )


def frame_digest(frame: Any) -> str:
    """MLflow's digest of a pandas frame (`mlflow.data.digest_utils.compute_pandas_digest`, the
    same value), without its `type` call on every value of every column: it hashes the first
    rows, but keeps a column as text only if every value of it is a `str`, which only a column
    of objects, strings or categories can be (about 2 s of fit at 1x)."""
    import numpy as np
    import pandas as pd
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

    api = pd.api.types
    trimmed = frame.head(MAX_ROWS)
    text = np.array(
        [
            not (
                api.is_numeric_dtype(column)
                or api.is_bool_dtype(column)
                or api.is_datetime64_any_dtype(column)
            )
            and bool(column.map(type).eq(str).all())
            for _, column in frame.items()
        ],
        dtype=bool,
    )
    kept = trimmed.columns[text].union(trimmed.select_dtypes(include=[np.number]).columns)
    return str(
        get_normalized_md5_digest(
            [pd.util.hash_pandas_object(trimmed[kept]).values, np.int64(len(frame))]
            + [str(name).encode() for name in frame.columns]
        )
    )


def _as_uri(location: str | None) -> str | None:
    if location is None or "://" in location:
        return location
    return Path(location).resolve().as_uri()


def dumps(evidence: dict[str, Any]) -> str:
    return json.dumps(evidence, sort_keys=True, default=str)
