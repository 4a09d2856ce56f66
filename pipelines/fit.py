"""Train: a point-in-time training set from Feast, a model, one tracked MLflow run.

The use case turns silver into labelled entity rows, stamped with the moment of prediction;
Feast joins each row with the feature values known at that moment, and nothing the use case
declares as known only afterwards (`never_inputs`) may be among the model's inputs.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

import models
from configs import Settings
from configs.settings import SplitConfig, TrainingConfig
from configs.source import git_commit
from models import calibration, evaluation, explain, slices, tuning
from models.answers import Answering, interval_halfwidth
from models.slices import SliceMetrics
from models.tracking import Tracker, TrackingUnavailable, tracking_errors
from models.tuning import Study
from monitoring.monitor import REFERENCE_MOMENT, REFERENCE_PART, TRAIN_PART
from pipelines.adapters.storage import StorageLayout
from pipelines.context import StageContext
from pipelines.lineage import GIT_COMMIT_TAG
from pipelines.results import StageFailed, StageResult
from storage import files as fs
from usecases import load as load_usecase
from usecases.contract import EVENT_TIMESTAMP, UseCase

log = logging.getLogger(__name__)


# Test rows the explanations are summarised over (a seeded sample: SHAP values cost more than
# predictions, most for model-agnostic explainers).
EXPLAINED_ROWS = 500


def _service_name(settings: Settings) -> str:
    # Feast (seconds to import) loads with the stages that read features: fitting and
    # evaluating alone, and their tests, never import it.
    from features.definitions import service_name

    return service_name(settings)


def model_features(settings: Settings) -> list[str]:
    """The model's inputs, in order: request-time features, then the FeatureService's."""
    return load_usecase(settings.usecase).model_inputs


def feature_frame(store: Any, settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """Entity rows joined point-in-time with their features (see features.inputs)."""
    from features.inputs import InputsError, offline_frame

    try:
        return offline_frame(store, settings, rows)
    except InputsError as err:
        raise StageFailed(str(err)) from err


def leaked_inputs(usecase: UseCase) -> list[str]:
    """Model inputs the use case declares as known only after the moment of prediction."""
    return sorted(usecase.examples.never_inputs & set(usecase.model_inputs))


@dataclass(frozen=True)
class Windows:
    """The dates the examples were split at: train from `train_from` (None: the first
    example) to `validation_start`, validation to `test_start`, test from there to the newest
    example, `test_to` (inclusive)."""

    train_from: pd.Timestamp | None
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    test_to: pd.Timestamp

    def describe(self) -> str:
        first = "the first example" if self.train_from is None else _day(self.train_from)
        return (
            f"train {first}..{_day(self.validation_start - pd.Timedelta(days=1))}, validation "
            f"{_day(self.validation_start)}..{_day(self.test_start - pd.Timedelta(days=1))}, "
            f"test {_day(self.test_start)}..{_day(self.test_to)}"
        )

    def params(self, kind: str) -> dict[str, str]:
        """As the run's params (what the report and the gate read back)."""
        return {
            "split.kind": kind,
            "split.train_from": "" if self.train_from is None else _day(self.train_from),
            "split.validation_start": _day(self.validation_start),
            "split.test_start": _day(self.test_start),
            "split.test_to": _day(self.test_to),
        }


def _day(moment: pd.Timestamp) -> str:
    return moment.date().isoformat()


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    windows: Windows


def windows_of(dates: pd.Series, split: SplitConfig) -> Windows:
    """Where the examples dated `dates` are split (see `SplitConfig`)."""
    newest = dates.max().normalize()
    if split.kind == "fixed":
        return Windows(
            None, pd.Timestamp(split.validation_start), pd.Timestamp(split.test_start), newest
        )
    # The test window ends with the newest example's day, whole weeks before it.
    test_start = newest + pd.Timedelta(days=1) - pd.Timedelta(weeks=split.test_weeks)
    validation_start = test_start - pd.Timedelta(weeks=split.validation_weeks)
    train_from = (
        None
        if split.max_train_weeks is None
        else validation_start - pd.Timedelta(weeks=split.max_train_weeks)
    )
    return Windows(train_from, validation_start, test_start, newest)


def split_by_date(frame: pd.DataFrame, split: SplitConfig, label: str, column: str) -> Split:
    """The labelled rows split in time by `split`; refuses a part with no rows or one label."""
    dates = pd.to_datetime(frame[column])
    if dates.empty:
        raise StageFailed("no labelled examples to split")
    windows = windows_of(dates, split)
    earliest = windows.train_from if windows.train_from is not None else dates.min()
    parts = Split(
        train=frame[(dates >= earliest) & (dates < windows.validation_start)],
        validation=frame[(dates >= windows.validation_start) & (dates < windows.test_start)],
        test=frame[dates >= windows.test_start],
        windows=windows,
    )
    for part in ("train", "validation", "test"):
        if getattr(parts, part).empty or getattr(parts, part)[label].nunique() < 2:
            raise StageFailed(
                f"the {part} split is empty or has one label value only ({windows.describe()}): "
                f"check training.split ({split.kind}) against the dates in silver "
                f"({_day(dates.min())}..{_day(dates.max())})"
            )
    return parts


def training_data(
    split: Split, features: list[str], training: TrainingConfig, usecase: UseCase
) -> models.TrainingData:
    label, target = usecase.examples.label, usecase.target
    return models.TrainingData(
        train=split.train[features],
        train_labels=split.train[label].to_numpy(),
        validation=split.validation[features],
        validation_labels=split.validation[label].to_numpy(),
        categorical=usecase.request.categorical,
        seed=training.seed,
        task=target.kind,
        classes=max(2, len(target.classes)),
    )


def fit(
    data: models.TrainingData,
    training: TrainingConfig,
    usecase: UseCase,
    metric: str,
) -> tuple[models.Model, Study | None]:
    """A model of the configured family, fitted on the training rows (the validation rows may
    stop it early); with `training.tuning.trials`, the best of a study judged by `metric` on
    the validation rows, refitted (and the study)."""
    chosen = training.model
    family = models.family(chosen.family)
    task = evaluation.task(data.task)
    try:
        if training.tuning.trials == 0:
            return family.fit(data, chosen.params), None

        def score(params: dict[str, Any]) -> tuple[float, str]:
            model = family.fit(data, params)
            predictions = model.predict(data.validation)
            threshold = answering_of(usecase, training, data.validation_labels, predictions)
            measured = task.evaluate(data.validation_labels, predictions, threshold.threshold)
            return measured[metric], model.summary()

        best, study = tuning.tune(
            training.tuning,
            chosen.family,
            chosen.params,
            training.seed,
            metric,
            metric not in task.lower_is_better,
            score,
        )
        log.info("%s", study.describe())
        return family.fit(data, best), study
    except models.ModelError as err:
        raise StageFailed(str(err)) from err


def calibrated(
    model: models.Model, training: TrainingConfig, labels: np.ndarray, scores: np.ndarray
) -> tuple[models.Model, calibration.Choice | None]:
    """The model with the calibration map `training.calibration` asks for, chosen and fitted
    on the validation rows (binary targets; `auto` keeps the scores when no map helps)."""
    if model.task != models.BINARY or training.calibration == calibration.NONE:
        return model, None
    choice = calibration.choose(training.calibration, labels, scores, training.seed)
    if choice.calibration.identity:
        return model, choice
    return calibration.Calibrated(model, choice.calibration), choice


@dataclass(frozen=True)
class Fitted:
    """A model fitted and judged: what `record` writes to the tracking server."""

    model: models.Model
    split: Split
    features: list[str]
    # How its predictions become answers: the threshold (binary), the class names
    # (multiclass) or the prediction interval (regression), fixed on the validation rows.
    answering: Answering
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    # `Model.predict` on the test rows: a score or value per row, or a row of class probabilities.
    test_scores: np.ndarray
    importance: pd.Series
    # Each slice of the test rows (the use case's), measured.
    slices: list[SliceMetrics] = field(default_factory=list)
    # What drives the predictions: SHAP values summarised over a sample of the test rows
    # (`models.explain.summary`), and the unit they add up in.
    explanation: pd.DataFrame | None = None
    explained_output: str = ""
    study: Study | None = None
    calibration_choice: calibration.Choice | None = None

    @property
    def threshold(self) -> float | None:
        """The decision threshold (binary targets; None for the others)."""
        return self.answering.threshold


def fit_and_evaluate(
    frame: pd.DataFrame, usecase: UseCase, training: TrainingConfig, metric: str | None = None
) -> Fitted:
    """Split the labelled rows by date, fit on the first part (tuned on the second by `metric`,
    the task's primary one unless named, when `training.tuning` asks), calibrate and fix how
    predictions become answers on the second (a binary target's threshold, a regression's
    prediction interval), measure on the third by the task's metrics, overall and per slice,
    and explain what drives the predictions. Pure: no tracking server, no Spark, no feature
    store."""
    leaked = leaked_inputs(usecase)
    if leaked:
        raise StageFailed(
            f"columns known only after the moment of prediction among the model inputs: {leaked}"
        )
    examples = usecase.examples
    features = usecase.model_inputs
    split = split_by_date(frame, training.split, examples.label, examples.split_column)
    data = training_data(split, features, training, usecase)
    task = evaluation.task(usecase.target.kind)
    model, study = fit(data, training, usecase, metric or task.primary_metric)
    model, calibration_choice = calibrated(
        model, training, data.validation_labels, model.predict(split.validation)
    )
    validation_scores = model.predict(split.validation)
    answering = answering_of(usecase, training, data.validation_labels, validation_scores)
    threshold = answering.threshold
    test_scores = model.predict(split.test)
    test_labels = split.test[examples.label].to_numpy()
    explained = split.test.sample(
        n=min(len(split.test), EXPLAINED_ROWS), random_state=training.seed
    )
    contributions = model.contributions(explained[features])
    return Fitted(
        model=model,
        split=split,
        features=features,
        answering=answering,
        validation_metrics=task.evaluate(data.validation_labels, validation_scores, threshold),
        test_metrics=task.evaluate(test_labels, test_scores, threshold),
        test_scores=test_scores,
        importance=model.importances(data),
        slices=slices.measure(
            split.test, test_labels, test_scores, threshold, usecase.slices, task
        ),
        explanation=explain.summary(contributions, explained[features], data.categorical),
        explained_output=contributions.output,
        study=study,
        calibration_choice=calibration_choice,
    )


def answering_of(
    usecase: UseCase, training: TrainingConfig, labels: np.ndarray, predictions: np.ndarray
) -> Answering:
    """How the model's predictions become answers, fixed on the validation rows."""
    target = usecase.target
    if target.kind == models.BINARY:
        threshold = (
            evaluation.best_f1_threshold(labels, predictions)
            if training.threshold == "best_f1"
            else training.threshold
        )
        return Answering(models.BINARY, threshold=float(threshold))
    if target.kind == models.MULTICLASS:
        return Answering(models.MULTICLASS, classes=target.classes)
    coverage = training.interval_coverage
    return Answering(
        models.REGRESSION,
        interval=interval_halfwidth(labels, predictions, coverage),
        coverage=coverage,
    )


def plot_all(
    folder: Path, labels: np.ndarray, scores: np.ndarray, fitted: Fitted, usecase: UseCase
) -> list[Path]:
    """The test set's charts for the task, per slice where it has them (binary: the
    reliability of the probabilities), and what drives the model, named in plain words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(name: str) -> None:
        path = folder / f"{name}.png"
        plt.tight_layout()
        plt.savefig(path, dpi=110)
        plt.close()
        paths.append(path)

    kind = usecase.target.kind
    if kind == models.BINARY:
        _binary_plots(labels, scores, usecase, plt, save)
        for part in usecase.slices:
            _reliability_by_slice(fitted.split.test, labels, scores, part, plt, save)
    elif kind == models.MULTICLASS:
        _multiclass_plots(labels, scores, usecase, plt, save)
    else:
        _regression_plots(labels, scores, usecase, plt, save)

    if fitted.explanation is not None:
        top = fitted.explanation.head(15).iloc[::-1]
        names, shares = top["feature"], top["share"]
        colours = ["#a12a1b" if d > 0 else "#1f5fa8" if d < 0 else "#888" for d in top["direction"]]
    else:
        ordered = fitted.importance.sort_values().tail(15)
        names, shares, colours = ordered.index, ordered.values, None
    plt.figure(figsize=(8, 5))
    plt.barh([usecase.describe(name) for name in names], shares, color=colours)
    plt.xlabel("share of how much the inputs move a prediction")
    plt.title("What drives the prediction")
    if colours is not None:
        from matplotlib.patches import Patch

        plt.legend(
            handles=[
                Patch(color="#a12a1b", label="more of it raises the prediction"),
                Patch(color="#1f5fa8", label="more of it lowers it"),
            ],
            loc="lower right",
            fontsize="small",
        )
    save("feature_importance")
    return paths


# Parts of a slice drawn on its reliability chart: the largest ones.
RELIABILITY_PARTS = 5


def _reliability_by_slice(
    test: pd.DataFrame, labels: np.ndarray, scores: np.ndarray, part: Any, plt: Any, save: Any
) -> None:
    """Predicted against observed shares, for the largest parts of one slice."""
    from sklearn.calibration import calibration_curve

    values = slices.values_of(test, part).to_numpy()
    names, counts = np.unique(values, return_counts=True)
    plt.figure(figsize=(5, 4))
    for name in names[np.argsort(-counts, kind="stable")][:RELIABILITY_PARTS]:
        rows = values == name
        if len(np.unique(labels[rows])) < 2:
            continue
        observed, predicted = calibration_curve(
            labels[rows], scores[rows], n_bins=5, strategy="quantile"
        )
        plt.plot(predicted, observed, "o-", label=f"{name} ({int(rows.sum()):,})")
    plt.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    plt.xlabel("predicted probability")
    plt.ylabel("observed share")
    plt.title(f"Honest probabilities, by {part.description} (test)")
    plt.legend(fontsize="small")
    save(f"calibration_by_{part.name}")


def _binary_plots(
    labels: np.ndarray, scores: np.ndarray, usecase: UseCase, plt: Any, save: Any
) -> None:
    from sklearn.calibration import calibration_curve

    fpr, tpr, _ = skm.roc_curve(labels, scores)
    plt.figure(figsize=(5, 4))
    plt.plot(fpr, tpr, label=f"model (AUC {skm.roc_auc_score(labels, scores):.3f})")
    plt.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    words = usecase.outcome
    plt.xlabel(f"share of other {words.items} flagged {words.positive}")
    plt.ylabel(f"share of {words.positive} {words.items} caught")
    plt.title("How well it ranks (ROC curve, test)")
    plt.legend()
    save("roc")

    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    plt.figure(figsize=(5, 4))
    plt.plot(recall, precision)
    plt.axhline(
        np.mean(labels), ls="--", color="grey", label=f"share of {words.positive} {words.items}"
    )
    plt.xlabel(f"recall (share of {words.positive} {words.items} caught)")
    plt.ylabel(f"precision (share of flagged that were {words.positive})")
    plt.title("Caught against right when flagged (test)")
    plt.legend()
    save("precision_recall")

    observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="quantile")
    plt.figure(figsize=(5, 4))
    plt.plot(predicted, observed, "o-", label="model")
    plt.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    plt.xlabel(f"predicted probability: {words.positive}")
    plt.ylabel(f"observed share {words.positive}")
    plt.title("Are its probabilities honest? (test)")
    plt.legend()
    save("calibration")


def _multiclass_plots(
    labels: np.ndarray, probabilities: np.ndarray, usecase: UseCase, plt: Any, save: Any
) -> None:
    classes = list(usecase.target.classes)
    shown = skm.confusion_matrix(
        labels, probabilities.argmax(axis=1), labels=list(range(len(classes)))
    )
    plt.figure(figsize=(6, 5))
    plt.imshow(shown, cmap="Blues")
    for (row, column), count in np.ndenumerate(shown):
        plt.text(column, row, str(count), ha="center", va="center")
    plt.xticks(range(len(classes)), classes, rotation=30)
    plt.yticks(range(len(classes)), classes)
    plt.xlabel("predicted")
    plt.ylabel("what happened")
    plt.title(f"Predicted and actual {usecase.outcome.items} (test)")
    save("confusion")


def _regression_plots(
    values: np.ndarray, predictions: np.ndarray, usecase: UseCase, plt: Any, save: Any
) -> None:
    unit = usecase.target.unit
    low, high = (
        float(min(values.min(), predictions.min())),
        float(max(values.max(), predictions.max())),
    )
    plt.figure(figsize=(5, 5))
    plt.scatter(values, predictions, s=6, alpha=0.5)
    plt.plot([low, high], [low, high], "--", color="grey", label="perfect")
    plt.xlabel(f"what happened ({unit})")
    plt.ylabel(f"predicted ({unit})")
    plt.title("Predicted and actual (test)")
    plt.legend()
    save("predicted_actual")

    plt.figure(figsize=(5, 4))
    plt.hist(predictions - values, bins=40)
    plt.axvline(0, ls="--", color="grey")
    plt.xlabel(f"error: predicted minus actual ({unit})")
    plt.ylabel(f"{usecase.outcome.items}")
    plt.title("How far off the predictions are (test)")
    save("errors")


def lineage(
    settings: Settings, layout: StorageLayout, frame: pd.DataFrame, usecase: UseCase
) -> dict[str, Any]:
    """The chain from landing drops to this training set, for the run's record."""
    drops = {
        table: {
            drop_id: {
                "content_hash": marker.content_hash,
                "gate_results": _gate_results(layout, table, drop_id),
            }
            for drop_id, marker in layout.drops_in(layout.silver(table)).items()
        }
        for table in (source.name for source in usecase.sources)
    }
    manifest = layout.features_manifest
    return {
        "landing_drops": drops,
        "feature_tables": json.loads(fs.read_text(manifest)) if fs.is_file(manifest) else {},
        "feature_service": {
            "name": _service_name(settings),
            "version": settings.features.service_version,
        },
        "training_set": {
            "rows": len(frame),
            "from": frame[EVENT_TIMESTAMP].min().isoformat(),
            "to": frame[EVENT_TIMESTAMP].max().isoformat(),
        },
    }


def _gate_results(layout: StorageLayout, table: str, drop_id: str) -> list[str]:
    gate = StorageLayout.gate_record(StorageLayout.drop_dir(layout.silver(table), drop_id))
    return json.loads(fs.read_text(gate)).get("results", []) if fs.is_file(gate) else []


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar params as MLflow params (`a.b`); lists and maps too long for a param are skipped."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flat(value, f"{name}.")
        elif isinstance(value, str | int | float | bool):
            flat[name] = value
    return flat


def _recording_failed(
    tracker: Tracker, run_id: str | None, registering: bool, err: BaseException
) -> TrackingUnavailable:
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


# The sample of the training rows kept with the model (artifact `evaluation/<this>`): its
# inputs and the model's scores, what the monitor compares live traffic with.
REFERENCE_SET = "reference_set.parquet"
REFERENCE_ARTIFACT = f"evaluation/{REFERENCE_SET}"


# Columns of the reference set besides the inputs: the answer's score, and the likeliest class
# (multiclass): what the monitor compares the prediction log's with.
REFERENCE_SCORE, REFERENCE_CLASS = "score", "predicted_class"


def reference_set(
    split: Split,
    model: models.Model,
    answering: Answering,
    features: list[str],
    settings: Settings,
) -> pd.DataFrame:
    """A seeded sample of every labelled row the model was built and judged on (training,
    validation and test): the model's inputs, its answer on each, the moment the row is about
    and its part. The monitor picks its drift reference among them (`monitoring.drift`)."""
    parts = pd.concat(
        [
            frame.assign(**{REFERENCE_PART: part})
            for part, frame in (
                (TRAIN_PART, split.train),
                ("validation", split.validation),
                ("test", split.test),
            )
        ],
        ignore_index=True,
    )
    rows = settings.monitoring.reference_rows
    sample = (
        parts.sample(n=rows, random_state=settings.training.seed) if len(parts) > rows else parts
    )
    answers = answering.answer(model.predict(sample))
    reference = sample[features].assign(**{REFERENCE_SCORE: answers.score})
    if answers.label is not None:
        reference[REFERENCE_CLASS] = answers.label
    reference[REFERENCE_MOMENT] = pd.to_datetime(sample[EVENT_TIMESTAMP], utc=True)
    reference[REFERENCE_PART] = sample[REFERENCE_PART]
    return reference.reset_index(drop=True)


def scored_test_set(fitted: Fitted, usecase: UseCase) -> pd.DataFrame:
    """The test rows with their inputs, label, slice columns and the model's answer: the
    score (and, for a multiclass target, the likeliest class and a probability column per
    class)."""
    examples = usecase.examples
    columns = [examples.row_id, examples.split_column, *fitted.features, examples.label]
    columns += [part.column for part in usecase.slices if part.column not in columns]
    answers = fitted.answering.answer(fitted.test_scores)
    scored = fitted.split.test[columns].assign(score=answers.score)
    if answers.label is not None:
        scored[REFERENCE_CLASS] = answers.label
        for index, name in enumerate(fitted.answering.classes):
            scored[f"probability__{name}"] = fitted.test_scores[:, index]
    return scored


# The run's tag with the fit in one line ("240 trees, isotonic").
FIT_SUMMARY_TAG = "model_summary"
# Artifacts of a training run, under `evaluation/`: each slice's metrics, and what drives
# the predictions (SHAP values summarised).
SLICES = "slices.json"
EXPLANATIONS = "explanations.json"


def slice_metrics(measured: list[SliceMetrics], metric: str) -> dict[str, float]:
    """A slice's support, the gate's metric and (binary) the Brier score, as MLflow metrics
    `slice.<slice>.<value>.<metric>`; every metric of every slice is in `evaluation/slices.json`."""
    logged: dict[str, float] = {}
    for part in measured:
        prefix = f"slice.{part.slice}.{part.value}"
        logged[f"{prefix}.support"] = float(part.support)
        for name in (metric, "brier"):
            if name in part.metrics:
                logged[f"{prefix}.{name}"] = part.metrics[name]
    return logged


def governance_metrics(fitted: Fitted) -> dict[str, float]:
    """The study's best and configured validation metric, each calibration map's Brier score
    on held-out validation rows, and each input's share of what moves the predictions."""
    logged: dict[str, float] = {}
    if fitted.study is not None:
        study = fitted.study
        logged[f"tuning.configured_validation_{study.metric}"] = study.configured.score
        logged[f"tuning.best_validation_{study.metric}"] = study.best.score
        logged["tuning.best_trial"] = float(study.best.number)
        logged["tuning.trials"] = float(len(study.trials))
    if fitted.calibration_choice is not None:
        for method, value in fitted.calibration_choice.held_out_brier.items():
            logged[f"calibration.held_out_brier_{method}"] = value
    if fitted.explanation is not None:
        for row in fitted.explanation.itertuples():
            logged[f"explain.share.{row.feature}"] = float(row.share)
    return logged


def explanation_record(fitted: Fitted) -> dict[str, Any]:
    """`evaluation/explanations.json`: what the contributions add up to, and per input (most
    important first) its share, average absolute contribution and direction."""
    summary = fitted.explanation
    return {
        "output": fitted.explained_output,
        "rows": int(min(len(fitted.split.test), EXPLAINED_ROWS)),
        "inputs": [] if summary is None else summary.to_dict(orient="records"),
    }


def _answering_params(answering: Answering, training: TrainingConfig) -> dict[str, Any]:
    """How the run's predictions become answers, as MLflow params (only what the task has)."""
    if answering.task == models.BINARY:
        return {"threshold": answering.threshold, "threshold_rule": str(training.threshold)}
    if answering.task == models.REGRESSION:
        return {"interval": answering.interval, "interval_coverage": answering.coverage}
    return {"classes": ",".join(answering.classes)}


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("fit")
    usecase = ctx.usecase
    examples = usecase.examples
    layout = StorageLayout(settings.paths)
    silver = layout.read_silver_columns(examples.table, list(examples.columns))
    if silver is None:
        raise StageFailed(f"no published silver {examples.table}: run collect and validate first")
    labels = examples.labelled(silver, settings.params)
    log.info("training set: %d labelled rows (of %d in silver)", len(labels), len(silver))
    from features.store import feature_store

    frame = feature_frame(feature_store(settings), settings, labels)
    fitted = fit_and_evaluate(frame, usecase, settings.training, settings.promotion.primary_metric)
    run_id, version = record(ctx, layout, frame, fitted)
    split, family = fitted.split, settings.training.model.family
    result.rows_in = len(frame)
    result.rows_out = len(split.test)
    result.notes.append(
        f"train/validation/test = {len(split.train):,}/{len(split.validation):,}/{len(split.test):,} rows "
        f"({split.windows.describe()}); "
        f"{family}: {fitted.model.summary()}"
        + ("" if fitted.threshold is None else f"; threshold {fitted.threshold:.3f}")
    )
    if fitted.study is not None:
        result.notes.append(fitted.study.describe())
    headline = evaluation.task(usecase.target.kind).headline
    result.notes.append("test: " + ", ".join(f"{k} {fitted.test_metrics[k]:.3f}" for k in headline))
    result.outputs |= {
        "mlflow run": run_id,
        "model": f"{settings.names.registered_model} version {version}",
    }
    result.handoff |= {"model_version": version, "run_id": run_id}
    return result


def record(
    ctx: StageContext, layout: StorageLayout, frame: pd.DataFrame, fitted: Fitted
) -> tuple[str, str]:
    """One tracked run of the fitted model: its parameters, metrics, lineage, evaluation
    artifacts, plots and the model, then the registered version. Returns (run id, version)."""
    settings, usecase = ctx.settings, ctx.usecase
    examples = usecase.examples
    label, split_column = examples.label, examples.split_column
    model, split, features = fitted.model, fitted.split, fitted.features
    tracker = Tracker(settings)
    lineage_record = lineage(settings, layout, frame, usecase)
    service = _service_name(settings)
    run_id = None
    registering = False
    try:
        with tracker.training_run() as run, tempfile.TemporaryDirectory() as tmp:
            run_id = run.run_id
            folder = Path(tmp)
            run.log(
                params={
                    "model_family": settings.training.model.family,
                    **{f"model.{k}": v for k, v in model.params().items()},
                    **_answering_params(fitted.answering, settings.training),
                    **{f"usecase.{k}": v for k, v in _flat(settings.params).items()},
                    "usecase": usecase.name,
                    **split.windows.params(settings.training.split.kind),
                    "feature_service": service,
                    "n_features": len(features),
                },
                metrics={
                    **{f"test_{k}": v for k, v in fitted.test_metrics.items()},
                    **{f"validation_{k}": v for k, v in fitted.validation_metrics.items()},
                    "train_rows": float(len(split.train)),
                    "validation_rows": float(len(split.validation)),
                    "test_rows": float(len(split.test)),
                    **slice_metrics(fitted.slices, settings.promotion.slice_metric),
                    **governance_metrics(fitted),
                },
                tags={
                    GIT_COMMIT_TAG: git_commit(),
                    FIT_SUMMARY_TAG: model.summary(),
                    "feature_service": service,
                    "training_rows": str(len(frame)),
                    "training_from": lineage_record["training_set"]["from"],
                    "training_to": lineage_record["training_set"]["to"],
                    "last_example_date": pd.Timestamp(frame[split_column].max()).date().isoformat(),
                },
            )
            run.log_training_set(frame, label, source=layout.silver(examples.table))
            if fitted.study is not None:
                run.log_trials(fitted.study)
            (folder / "features.json").write_text(json.dumps(features, indent=2))
            (folder / "lineage.json").write_text(json.dumps(lineage_record, indent=2))
            (folder / "feature_importance.json").write_text(
                fitted.importance.sort_values(ascending=False).to_json(indent=2)
            )
            (folder / SLICES).write_text(
                json.dumps([part.as_dict() for part in fitted.slices], indent=2)
            )
            (folder / EXPLANATIONS).write_text(json.dumps(explanation_record(fitted), indent=2))
            scored_test_set(fitted, usecase).to_parquet(folder / "test_set.parquet", index=False)
            reference_set(split, model, fitted.answering, features, settings).to_parquet(
                folder / REFERENCE_SET, index=False
            )
            run.log_files(
                [
                    folder / name
                    for name in (
                        "features.json",
                        "lineage.json",
                        "feature_importance.json",
                        SLICES,
                        EXPLANATIONS,
                        "test_set.parquet",
                        REFERENCE_SET,
                    )
                ],
                "evaluation",
            )
            test_labels = split.test[label].to_numpy()
            plots = plot_all(folder, test_labels, fitted.test_scores, fitted, usecase)
            run.log_files(plots, "plots")
            model_uri = run.log_model(
                model,
                split.test[features],
                fitted.test_scores,
                {**fitted.answering.metadata(), "feature_service": service},
            )
            # Registered last, with its tags in the same call: a version exists complete or not
            # at all, and only once every artifact of its run is stored.
            registering = True
            version = run.register(model_uri, {"run_id": run_id, "feature_service": service})
    except tracking_errors() as err:
        raise _recording_failed(tracker, run_id, registering, err) from err
    return run_id, version
