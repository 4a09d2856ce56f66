"""Train: a point-in-time training set from Feast, a LightGBM model, one tracked MLflow run.

The label frame is every flight that arrived (cancelled and diverted flights have no arrival
delay to learn; the model answers "will it arrive late, if it flies"), stamped with its
scheduled departure. Feast joins each flight with the feature values known at that moment;
nothing recorded after departure (dep_delay, actual times, air_time) is among the inputs.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from configs import Settings
from features.definitions import build_repo, service_name
from features.names import EVENT_TIMESTAMP
from features.request import CATEGORICAL_FEATURES, REQUEST_FEATURES, request_features
from features.store import feature_store
from pipelines.adapters import filesystem as fs
from pipelines.adapters.storage import StorageLayout
from pipelines.adapters.tracking import Tracker, TrackingUnavailable, tracking_errors
from pipelines.results import StageFailed, StageResult

log = logging.getLogger(__name__)

LABEL = "late"
ROW_ID = "flight_id"
# Known only after the plane has left: never an input.
POST_DEPARTURE_COLUMNS = frozenset(
    {
        "dep_delay",
        "arr_delay",
        "dep_utc",
        "arr_utc",
        "air_time",
        "dep_time",
        "arr_time",
        "cancelled",
        "diverted",
    }
)
LABEL_COLUMNS = [
    "flight_id",
    "tailnum",
    "origin",
    "dest",
    "carrier",
    "distance",
    "sched_dep_utc",
    "flight_date",
    "arr_delay",
    "cancelled",
    "diverted",
]
UNKNOWN_TAILNUM = "UNKNOWN"


def entity_frame(flights: pd.DataFrame) -> pd.DataFrame:
    """Silver flights as Feast entity rows: keys, event time (the scheduled departure) and the
    request inputs. Used for training (with a label added) and for batch scoring."""
    return pd.DataFrame(
        {
            ROW_ID: flights["flight_id"],
            "tailnum": flights["tailnum"].fillna(UNKNOWN_TAILNUM),
            "origin": flights["origin"],
            "carrier": flights["carrier"],
            "route": flights["origin"] + "-" + flights["dest"],
            "distance": flights["distance"],
            "sched_dep_utc": flights["sched_dep_utc"],
            EVENT_TIMESTAMP: flights["sched_dep_utc"],
            "flight_date": pd.to_datetime(flights["flight_date"]),
        }
    ).reset_index(drop=True)


def label_frame(flights: pd.DataFrame, late_minutes: float) -> pd.DataFrame:
    """One row per flight that arrived: entity keys, event time, request inputs and the label."""
    arrived = flights[~flights["cancelled"] & ~flights["diverted"] & flights["arr_delay"].notna()]
    labelled = entity_frame(arrived)
    labelled[LABEL] = (arrived["arr_delay"] > late_minutes).astype("int64").to_numpy()
    return labelled


def model_features(settings: Settings) -> list[str]:
    """The model's inputs, in order: request-time features, then the FeatureService's."""
    return [*REQUEST_FEATURES, *build_repo(settings).feature_names]


def feature_frame(store: Any, settings: Settings, flights: pd.DataFrame) -> pd.DataFrame:
    """Flights (labelled or not) joined point-in-time with the FeatureService, plus the request
    features: the training set for `fit`, the scoring frame for `batch-predict`."""
    repo = build_repo(settings)
    entity_columns = [ROW_ID, "tailnum", "origin", "carrier", "route", EVENT_TIMESTAMP]
    service = store.get_feature_service(repo.service.name)
    joined = store.get_historical_features(
        entity_df=flights[entity_columns], features=service
    ).to_df()
    if len(joined) != len(flights) or joined[ROW_ID].duplicated().any():
        raise StageFailed(
            f"the point-in-time join returned {len(joined)} rows for {len(flights)} flights; "
            "every flight must come back exactly once"
        )
    features = joined[[ROW_ID, *repo.feature_names]]
    frame = flights.merge(features, on=ROW_ID, how="left", validate="one_to_one")
    request = request_features(
        frame,
        carriers=settings.features.carriers,
        origins=list(settings.features.origin_timezones),
        origin_timezones=settings.features.origin_timezones,
    )
    frame = pd.concat([frame, request.drop(columns=["distance"])], axis=1)
    # Every input as float64: offline, Feast returns ints as floats where a value is missing,
    # and online a missing value is None; one dtype keeps training and serving alike.
    inputs = model_features(settings)
    frame[inputs] = frame[inputs].astype("float64")
    return frame.sort_values([EVENT_TIMESTAMP, ROW_ID]).reset_index(drop=True)


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split_by_date(frame: pd.DataFrame, settings: Settings) -> Split:
    validation_start = pd.Timestamp(settings.training.split.validation_start)
    test_start = pd.Timestamp(settings.training.split.test_start)
    dates = frame["flight_date"]
    split = Split(
        train=frame[dates < validation_start],
        validation=frame[(dates >= validation_start) & (dates < test_start)],
        test=frame[dates >= test_start],
    )
    for part in ("train", "validation", "test"):
        if getattr(split, part).empty or getattr(split, part)[LABEL].nunique() < 2:
            raise StageFailed(
                f"the {part} split is empty or has one class only: check training.split "
                f"({settings.training.split.validation_start}, {settings.training.split.test_start}) "
                "against the dates in silver"
            )
    return split


def lightgbm_params(settings: Settings) -> dict[str, Any]:
    return {
        "objective": "binary",
        "verbosity": -1,
        **settings.training.lightgbm,
        "seed": settings.training.seed,
        "deterministic": True,
        "force_row_wise": True,
    }


def fit(split: Split, features: list[str], settings: Settings) -> Any:
    import lightgbm as lgb

    categorical = [c for c in CATEGORICAL_FEATURES if c in features]
    train = lgb.Dataset(
        split.train[features],
        split.train[LABEL],
        categorical_feature=categorical,
        free_raw_data=False,
    )
    validation = lgb.Dataset(split.validation[features], split.validation[LABEL], reference=train)
    return lgb.train(
        lightgbm_params(settings),
        train,
        num_boost_round=settings.training.num_boost_round,
        valid_sets=[validation],
        callbacks=[lgb.early_stopping(settings.training.early_stopping_rounds, verbose=False)],
    )


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, thresholds = skm.precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the average gap between predicted and observed late rates,
    over ten equal-sized groups of flights ordered by score (weighted by group size)."""
    order = np.argsort(scores, kind="stable")
    groups = np.array_split(order, bins)
    gaps = [abs(scores[g].mean() - labels[g].mean()) * len(g) for g in groups if len(g)]
    return float(sum(gaps) / len(scores))


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics the gate and the report use, on one set of predictions."""
    flagged = scores >= threshold
    return {
        "roc_auc": float(skm.roc_auc_score(labels, scores)),
        "pr_auc": float(skm.average_precision_score(labels, scores)),
        "log_loss": float(skm.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7))),
        "brier": float(skm.brier_score_loss(labels, scores)),
        "precision": float(skm.precision_score(labels, flagged, zero_division=0)),
        "recall": float(skm.recall_score(labels, flagged, zero_division=0)),
        "calibration_error": calibration_error(labels, scores),
        "late_rate": float(np.mean(labels)),
        "flagged_rate": float(np.mean(flagged)),
    }


def plot_all(
    folder: Path, labels: np.ndarray, scores: np.ndarray, importance: pd.Series
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    paths = []

    def save(name: str) -> None:
        path = folder / f"{name}.png"
        plt.tight_layout()
        plt.savefig(path, dpi=110)
        plt.close()
        paths.append(path)

    fpr, tpr, _ = skm.roc_curve(labels, scores)
    plt.figure(figsize=(5, 4))
    plt.plot(fpr, tpr, label=f"model (AUC {skm.roc_auc_score(labels, scores):.3f})")
    plt.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    plt.xlabel("false positive rate")
    plt.ylabel("true positive rate")
    plt.title("ROC curve (test)")
    plt.legend()
    save("roc")

    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    plt.figure(figsize=(5, 4))
    plt.plot(recall, precision)
    plt.axhline(np.mean(labels), ls="--", color="grey", label="share of late flights")
    plt.xlabel("recall (share of late flights caught)")
    plt.ylabel("precision (share of flagged that were late)")
    plt.title("Precision-recall (test)")
    plt.legend()
    save("precision_recall")

    observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="quantile")
    plt.figure(figsize=(5, 4))
    plt.plot(predicted, observed, "o-", label="model")
    plt.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    plt.xlabel("predicted probability of a late arrival")
    plt.ylabel("observed share late")
    plt.title("Calibration (test)")
    plt.legend()
    save("calibration")

    top = importance.sort_values().tail(15)
    plt.figure(figsize=(6, 5))
    plt.barh(top.index, top.values)
    plt.xlabel("share of the model's gain")
    plt.title("What drives the prediction")
    save("feature_importance")
    return paths


def lineage(settings: Settings, layout: StorageLayout, frame: pd.DataFrame) -> dict[str, Any]:
    """The chain from landing drops to this training set, for the run's record."""
    drops = {
        table: {
            drop_id: {
                "content_hash": marker.content_hash,
                "gate_results": _gate_results(layout, table, drop_id),
            }
            for drop_id, marker in layout.drops_in(layout.silver(table)).items()
        }
        for table in ("flights", "weather", "planes", "airports", "airlines")
    }
    manifest = fs.join(layout.lake, "features", "_manifest.json")
    return {
        "landing_drops": drops,
        "feature_tables": json.loads(fs.read_text(manifest)) if fs.is_file(manifest) else {},
        "feature_service": {
            "name": service_name(settings),
            "version": settings.features.service_version,
        },
        "training_set": {
            "rows": len(frame),
            "from": frame[EVENT_TIMESTAMP].min().isoformat(),
            "to": frame[EVENT_TIMESTAMP].max().isoformat(),
        },
    }


def _gate_results(layout: StorageLayout, table: str, drop_id: str) -> list[str]:
    gate = fs.join(StorageLayout.drop_dir(layout.silver(table), drop_id), "_gate.json")
    return json.loads(fs.read_text(gate)).get("results", []) if fs.is_file(gate) else []


def _recording_failed(
    tracker: Tracker, run_id: str | None, registering: bool, err: BaseException
) -> StageFailed:
    """The tracking server failed mid-run: undo any registration, say what state things are in."""
    cause = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    if not registering:
        registry = "no model version was registered"
    else:
        try:
            discarded = tracker.discard_versions_of_run(run_id) if run_id else []
            registry = (
                f"version(s) {', '.join(discarded)} of this run were deleted"
                if discarded
                else "no model version was registered"
            )
        except tracking_errors():
            registry = (
                f"nothing was promoted; if `python -m pipelines promotions` lists a version of "
                f"run {run_id}, delete it: its run did not finish"
            )
    return TrackingUnavailable(
        f"MLflow at {tracker.config.tracking_uri} failed while recording the training run "
        f"{run_id or '(not started)'} ({cause}); {registry}, and the champion is unchanged. "
        "Run the training again once MLflow answers."
    )


def run(settings: Settings, handoff: dict[str, str]) -> StageResult:
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    result = StageResult("fit")
    layout = StorageLayout(settings.paths)
    flights = layout.read_silver_columns("flights", LABEL_COLUMNS)
    if flights is None:
        raise StageFailed("no published silver flights: run collect and validate first")
    labels = label_frame(flights, settings.training.late_minutes)
    log.info("training set: %d flights that arrived (of %d)", len(labels), len(flights))
    frame = feature_frame(feature_store(settings), settings, labels)
    features = model_features(settings)
    leaked = POST_DEPARTURE_COLUMNS & set(features)
    if leaked:
        raise StageFailed(f"post-departure columns among the model inputs: {sorted(leaked)}")
    split = split_by_date(frame, settings)
    booster = fit(split, features, settings)
    validation_scores = booster.predict(split.validation[features])
    threshold = settings.training.threshold
    if threshold == "best_f1":
        threshold = best_f1_threshold(split.validation[LABEL].to_numpy(), validation_scores)
    test_scores = booster.predict(split.test[features])
    test_metrics = evaluate(split.test[LABEL].to_numpy(), test_scores, float(threshold))
    validation_metrics = evaluate(
        split.validation[LABEL].to_numpy(), validation_scores, float(threshold)
    )
    gain = pd.Series(booster.feature_importance("gain"), index=features)
    importance = gain / gain.sum()

    tracker = Tracker(settings.mlflow)
    record = lineage(settings, layout, frame)
    run_id = None
    registering = False
    try:
        with (
            mlflow.start_run(experiment_id=tracker.experiment_id) as active,
            tempfile.TemporaryDirectory() as tmp,
        ):
            run_id = active.info.run_id
            folder = Path(tmp)
            mlflow.log_params(
                {
                    **{f"lgb.{k}": v for k, v in lightgbm_params(settings).items()},
                    "best_iteration": booster.best_iteration,
                    "threshold": float(threshold),
                    "threshold_rule": str(settings.training.threshold),
                    "late_minutes": settings.training.late_minutes,
                    "split.validation_start": settings.training.split.validation_start,
                    "split.test_start": settings.training.split.test_start,
                    "feature_service": service_name(settings),
                    "n_features": len(features),
                }
            )
            mlflow.log_metrics(
                {
                    **{f"test_{k}": v for k, v in test_metrics.items()},
                    **{f"validation_{k}": v for k, v in validation_metrics.items()},
                    "test_rows": float(len(split.test)),
                }
            )
            mlflow.set_tags(
                {
                    "feature_service": service_name(settings),
                    "training_rows": str(len(frame)),
                    "training_from": record["training_set"]["from"],
                    "training_to": record["training_set"]["to"],
                    "last_flight_date": frame["flight_date"].max().date().isoformat(),
                }
            )
            (folder / "features.json").write_text(json.dumps(features, indent=2))
            (folder / "lineage.json").write_text(json.dumps(record, indent=2))
            (folder / "feature_importance.json").write_text(
                importance.sort_values(ascending=False).to_json(indent=2)
            )
            test_set = split.test[[ROW_ID, "flight_date", *features, LABEL]].assign(
                score=test_scores
            )
            test_set.to_parquet(folder / "test_set.parquet", index=False)
            for path in (
                "features.json",
                "lineage.json",
                "feature_importance.json",
                "test_set.parquet",
            ):
                mlflow.log_artifact(str(folder / path), artifact_path="evaluation")
            for plot in plot_all(folder, split.test[LABEL].to_numpy(), test_scores, importance):
                mlflow.log_artifact(str(plot), artifact_path="plots")
            example = split.test[features].head(5)
            info = mlflow.lightgbm.log_model(
                booster,
                name="model",
                # Inferred from the whole test set, so columns that can be missing are marked optional.
                signature=infer_signature(split.test[features], test_scores),
                input_example=example,
                pip_requirements=[
                    f"lightgbm=={lgb.__version__}",
                    f"pandas=={pd.__version__}",
                    f"numpy=={np.__version__}",
                ],
                metadata={
                    "threshold": float(threshold),
                    "features": features,
                    "feature_service": service_name(settings),
                },
            )
            # Registered last, with its tags in the same call: a version exists complete or not
            # at all, and only once every artifact of its run is stored.
            registering = True
            registered = mlflow.register_model(
                info.model_uri,
                settings.mlflow.registered_model,
                tags={"run_id": run_id, "feature_service": service_name(settings)},
            )
    except tracking_errors() as err:
        raise _recording_failed(tracker, run_id, registering, err) from err
    version = str(registered.version)
    result.rows_in = len(frame)
    result.rows_out = len(split.test)
    result.notes.append(
        f"train/validation/test = {len(split.train):,}/{len(split.validation):,}/{len(split.test):,} flights; "
        f"{booster.best_iteration} trees; threshold {float(threshold):.3f}"
    )
    result.notes.append(
        "test: "
        + ", ".join(
            f"{k} {test_metrics[k]:.3f}"
            for k in ("roc_auc", "pr_auc", "brier", "precision", "recall")
        )
    )
    result.outputs |= {
        "mlflow run": run_id,
        "model": f"{settings.mlflow.registered_model} version {version}",
    }
    result.handoff |= {"model_version": version, "run_id": run_id}
    return result
