"""The platform's one typed configuration object, and the loader that builds it.

`configs/base.yaml` holds what every environment shares; the use case's own
`usecases/<name>/config.yaml` is merged over it, and `configs/<env>.yaml` over both.
`${VAR}` and `${VAR:-default}` placeholders are filled from the environment at load time, and
`{usecase}` in any value becomes the use case's name (each use case keeps its data apart).
Every model refuses unknown keys, so a typo fails at start with the key's full path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent
ENV_VARIABLE = "MLOPS_ENV"
USECASE_VARIABLE = "MLOPS_USECASE"
USECASES_DIR = CONFIG_DIR.parent / "usecases"
# A JSON object deep-merged over the overlay: for one process (a container, a test server).
OVERRIDES_VARIABLE = "MLOPS_OVERRIDES"
DEFAULT_ENV = "local"
# The profile of the AWS deployment; `staging` and `prod` extend it (each its own stacks).
AWS_PROFILE = "aws"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_USECASE_TOKEN = "{usecase}"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class ConfigError(ValueError):
    """The configuration cannot be loaded; the message names the file, key and problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    """Where each zone lives. Relative paths are resolved against the working directory."""

    landing: str = "data/landing"
    lake: str = "data/lake"
    quarantine: str = "data/quarantine"
    reports: str = "reports"
    # The prediction log (monitoring/prediction_log.py): every prediction served or batch-scored.
    prediction_log: str = "data/prediction_log"
    # What the monitor decided, and why (one JSON file per decision).
    monitoring: str = "data/monitoring"
    # BentoML's model and Bento stores (BENTOML_HOME).
    bentoml_home: str = "data/bentoml"


class LandConfig(Strict):
    # None lands the use case's own upstream files; a folder with the same file names
    # (each source's `file`, or the CSV inside it) lands that instead.
    source_dir: str | None = None
    # Months to land (YYYY-MM); empty means every month in the source.
    months: list[str] = Field(default_factory=list)
    # Drop id of the reference (non-monthly) tables, delivered once.
    snapshot_id: str = "2013"
    # Scale factor for benchmarks: N lands the source N times, copy k made new data by the
    # use case's `replicate` (its dates moved k years later, say), 1 is the real data.
    scale_factor: int = Field(1, ge=1, le=99)

    @field_validator("months")
    @classmethod
    def _months_are_yyyy_mm(cls, months: list[str]) -> list[str]:
        bad = [m for m in months if not _MONTH.match(m)]
        if bad:
            raise ValueError(f"months must look like 2013-01, got {bad}")
        return months


class SparkConfig(Strict):
    # Empty: whatever spark-submit was given (EMR Serverless sets its own master).
    master: str = "local[*]"
    app_name: str = "mlops-platform"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    # Extra `spark.*` settings, passed through as given.
    conf: dict[str, str] = Field(default_factory=dict)


class CollectConfig(Strict):
    # The run fails when more than this share of the landed drops is quarantined.
    max_quarantined_share: float = Field(0.0, ge=0.0, le=1.0)
    # How the source writes a missing value.
    null_token: str = "NA"
    # How many example bad rows a quarantine reason file lists.
    examples_in_reason: int = Field(5, ge=0)
    # New drops of one table are collected together, one Spark job per batch of drops whose
    # files add up to at most this many MiB (a larger drop is a batch of its own): each batch
    # costs seconds of fixed work, and memory stays bounded whatever the backlog. 24 drops
    # at a time ran 2.4 times slower on small drops (BENCHMARKS.md, step 4).
    batch_mib: int = Field(256, ge=1)
    # Judge every quarantined drop again (`--retry-quarantined`). Without it a drop stays
    # quarantined until its content or the use case (code, params, quality rules) changes.
    retry_quarantined: bool = False


class Range(Strict):
    min: float | None = None
    max: float | None = None
    # Share of each drop's non-null values that must be in range (1.0 = all); for noisy sensors.
    mostly: float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RowCount(Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=0)


class TableQuality(Strict):
    """The Great Expectations suite for one silver table, as data."""

    not_null: list[str] = Field(default_factory=list)
    unique: list[list[str]] = Field(default_factory=list)
    ranges: dict[str, Range] = Field(default_factory=dict)
    in_set: dict[str, list[str]] = Field(default_factory=dict)
    rows_per_drop: RowCount | None = None


class QualityConfig(Strict):
    tables: dict[str, TableQuality] = Field(default_factory=dict)


class FeaturesConfig(Strict):
    """The Feast repository: where its registry and stores live, and the FeatureService's
    version (its name and the Feast project derive from the project's name)."""

    service_version: int = Field(1, ge=1)
    # Passed to Feast's RepoConfig as given; relative `path`s resolve against the working dir.
    registry: dict[str, Any] = Field(
        default_factory=lambda: {"registry_type": "file", "path": "data/feast/registry.db"}
    )
    online_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "sqlite", "path": "data/feast/online.db"}
    )
    offline_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "features.offline_store.AsofDuckDBOfflineStore"}
    )


class MlflowServerConfig(Strict):
    """The tracking server `make services-up` starts (services profile): PostgreSQL behind it,
    artifacts proxied by the server, so clients need no access to the artifact store."""

    backend_store_uri: str
    # Where the server keeps artifacts (local folder, or s3://... behind a real deployment).
    artifacts_destination: str = "data/services/mlflow/artifacts"
    # The server's pid file and log.
    home: str = "data/services/mlflow"
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(2, ge=1)


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///data/mlflow/mlflow.db"
    # Where a new experiment keeps its artifacts (local folder or s3://...); null lets the
    # tracking server decide (its proxied artifact store).
    artifact_location: str | None = "data/mlflow/artifacts"
    # How hard the client tries a tracking server that does not answer before the stage fails:
    # retries per request (with exponential backoff from `request_backoff_s`) and the timeout of
    # one request. The defaults give up on a dead server in about 15 s, not MLflow's minutes.
    request_retries: int = Field(3, ge=0)
    request_backoff_s: int = Field(1, ge=0)
    request_timeout_s: int = Field(60, ge=1)
    server: MlflowServerConfig | None = None
    # Where `make ui` serves the MLflow UI over a local tracking store (the use case's index
    # page links to it).
    ui_port: int = Field(5000, ge=1, le=65535)


class SplitConfig(Strict):
    """How the labelled examples are split in time, on the use case's split column: the model
    learns from the first part, is tuned on the second and tested on the third.

    - `fixed`: train < validation_start <= validation < test_start <= test, by date.
    - `rolling`: test = the newest `test_weeks` weeks of labelled examples, validation = the
      `validation_weeks` weeks before, train = what came before them (only the newest
      `max_train_weeks` weeks when set). A retrain after new months have landed tests on the
      newest weeks and learns from everything before: what a scheduled or monitor-triggered
      retrain needs.
    """

    kind: Literal["fixed", "rolling"] = "fixed"
    validation_start: str = "2013-09-01"
    test_start: str = "2013-11-01"
    test_weeks: int = Field(8, ge=1)
    validation_weeks: int = Field(8, ge=1)
    max_train_weeks: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SplitConfig:
        if self.kind == "fixed" and self.validation_start >= self.test_start:
            raise ValueError("validation_start must come before test_start")
        return self


class ModelConfig(Strict):
    """The model family (`models.family`) and its parameters, passed through."""

    family: Literal["lightgbm", "sklearn"] = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)


class SearchRange(Strict):
    """One parameter's range in a tuning study: `low`..`high` (of integers when `integer`, on
    a log scale when `log`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[str | int | float | bool] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give choices, or low and high, not both")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("give low < high (or choices)")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range (not of choices)."""
        if self.low is None or self.high is None:
            raise ValueError("a search range of choices has no bounds")
        return self.low, self.high

    def holds(self, value: Any) -> bool:
        """Whether `value` lies in the range (is one of the choices)."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        low, high = self.bounds
        return low <= value <= high and (not self.integer or float(value).is_integer())


class TuningConfig(Strict):
    """An Optuna study per fit (`models.tuning`): 0 trials fits the configured parameters
    once. The study maximises (or minimises) the promotion's primary metric on the validation
    rows; the gate still judges the result on the test rows."""

    trials: int = Field(0, ge=0)
    # Stop starting trials after this long (the study is then not reproducible trial for trial).
    timeout_s: float | None = Field(None, gt=0)
    # The search space per model family: parameter name (dotted into nested ones) -> range.
    space: dict[str, dict[str, SearchRange]] = Field(default_factory=dict)


class TrainingConfig(Strict):
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 42
    model: ModelConfig = Field(default_factory=ModelConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    # Binary targets: a map from scores to probabilities fitted on the validation rows
    # (`models.calibration`): none, platt, isotonic, or auto (the one with the lowest Brier
    # score on held-out validation rows, none included).
    calibration: Literal["none", "platt", "isotonic", "auto"] = "none"
    # Binary targets: "best_f1" picks the threshold on the validation set; a number fixes it.
    threshold: Literal["best_f1"] | float = "best_f1"
    # Regression targets: the share of validation rows the served prediction interval holds.
    interval_coverage: float = Field(0.9, gt=0, lt=1)


class SliceGateConfig(Strict):
    """The gate on the use case's slices (`UseCase.slices`): a candidate worse than the
    champion, on the same test rows, by more than `max_drop` of `metric` on any slice of at
    least `min_support` rows is refused, naming the slice."""

    # None: the promotion's primary metric.
    metric: str | None = None
    max_drop: float = Field(0.02, ge=0.0)
    min_support: int = Field(500, ge=1)


class PromotionConfig(Strict):
    """A new model becomes `champion` only if it passes every bound, beats the champion and is
    not much worse than it on any slice."""

    minimum: dict[str, float] = Field(default_factory=dict)  # metric >= bound
    maximum: dict[str, float] = Field(default_factory=dict)  # metric <= bound
    primary_metric: str = "roc_auc"
    min_improvement: float = Field(0.001, ge=0.0)
    slices: SliceGateConfig = Field(default_factory=SliceGateConfig)

    @property
    def slice_metric(self) -> str:
        return self.slices.metric or self.primary_metric


class PredictionLogConfig(Strict):
    """The prediction log: each serving worker hands its predictions to a writer process of its
    own, which buffers them (bounded) and writes them in the background."""

    enabled: bool = True
    # Records held before the newest are dropped (and counted on /metrics).
    capacity: int = Field(100_000, ge=1)
    # A write starts when this many records wait, or every `flush_interval_s`.
    flush_rows: int = Field(5_000, ge=1)
    flush_interval_s: float = Field(5.0, gt=0)


class DriftConfig(Strict):
    """Drift of each model input and of the score, live window against the reference set."""

    # Evidently's method per column ("psi", "wasserstein", "ks", "jensenshannon", ...) and the
    # score above which a column has drifted (for a p-value method: below which).
    method: str = "psi"
    threshold: float = Field(0.2, gt=0)
    # ...and the bound of a column of its own (a model input, or `score` / `predicted_class`
    # for the answer), where one input moves more than the others by nature.
    thresholds: dict[str, float] = Field(default_factory=dict)
    # What the window is compared with, among the rows the champion was built and judged on
    # (a sample kept with it, `reference_rows`):
    # - seasonal: the same weeks a year earlier (52 weeks: the same weekdays), widened by
    #   `seasonal_margin_days` on each side, when the data reaches back that far; else `recent`;
    # - recent: the newest `recent_days` days of them (the weeks just before it went live);
    # - training: all its training rows (a seasonal input then drifts with every season).
    # A reference of fewer than `min_reference_rows` rows falls back (seasonal, recent,
    # training); the monitor's report and decision say which one it used, and why.
    reference: Literal["seasonal", "recent", "training"] = "seasonal"
    seasonal_margin_days: int = Field(7, ge=0)
    recent_days: int = Field(28, ge=1)
    min_reference_rows: int = Field(500, ge=1)
    # The window: the newest `window_days` days of logged predictions.
    window_days: int = Field(7, ge=1)
    # Fewer logged predictions than this in the window: no verdict on drift.
    min_rows: int = Field(500, ge=1)
    # Inputs not judged for drift: those that differ between any window and the training
    # period by construction (a calendar month: a December week is never like a year).
    ignore: list[str] = Field(default_factory=list)

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = {name: value for name, value in thresholds.items() if not value > 0}
        if bad:
            raise ValueError(f"a drift bound is above 0: {bad}")
        return thresholds

    def threshold_of(self, column: str) -> float:
        return self.thresholds.get(column, self.threshold)


class RetrainConfig(Strict):
    """When `monitor` decides to retrain (the champion/challenger gate still decides promotion)."""

    # Retrain when more than this share of the model's inputs drifted, or the score drifted.
    max_drifted_share: float = Field(0.3, ge=0, le=1)
    on_score_drift: bool = True
    # Retrain when the live value of the gate's primary metric falls below this (rises above
    # it, for a metric where lower is better, e.g. MAE), once outcomes have arrived for at
    # least `min_outcomes` logged predictions; None: never on decay.
    min_live_metric: float | None = 0.65
    min_outcomes: int = Field(500, ge=1)
    # Retrain when the champion's newest training example is older than this many days (at
    # the newest logged prediction); None: never on age alone.
    max_model_age_days: int | None = 90


class MonitoringConfig(Strict):
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    # The labelled rows kept with each model (a seeded sample of its training, validation and
    # test rows, with the model's answers): what the monitor picks its drift reference from.
    reference_rows: int = Field(50_000, ge=100)
    # How long after the moment a prediction is about its outcome is known (ISO 8601, e.g.
    # PT6H, P1D): live metrics count only predictions whose outcome is due by the window's
    # end, and the monitor reports the share of those whose outcome has arrived.
    label_delay: timedelta = timedelta(0)
    # How often each serving worker reads the monitor's newest decision for its gauges.
    gauges_refresh_s: float = Field(60.0, gt=0)
    # Publish each verdict's figures to CloudWatch (the aws profile: its alarms notify the
    # chain's topic on drift and decay; configs/cloudwatch.py).
    publish_to_cloudwatch: bool = False


class ReplayShift(Strict):
    """A shift injected into one period's raw data (a column in the wrong unit, say): the
    monitor must flag it and name the model input it reaches."""

    source: str  # the use case's source whose upstream file is changed
    column: str
    period: str  # the drop (month) it is injected into
    scale: float = 1.0  # value * scale + offset
    offset: float = 0.0
    expect: str  # the model input the monitor must name
    what: str = ""  # in words, for the timeline


class ReplayConfig(Strict):
    """`make replay`: the loop played over past data, one period (month) at a time."""

    # Periods landed and trained on before the first model serves.
    train: list[str] = Field(default_factory=list)
    # Then, one at a time: land, score with the champion, monitor, retrain when it decides.
    periods: list[str] = Field(default_factory=list)
    shift: ReplayShift | None = None


class RunLockConfig(Strict):
    """One run at a time per workspace (pipelines/adapters/run_lock.py)."""

    # `file`: an OS lock on a file beside the workspace (local, services); `orchestrator`: the
    # orchestrator that starts each stage holds the lock around the run (aws: the state
    # machine's DynamoDB lock), so a stage takes nothing more.
    kind: Literal["file", "orchestrator"] = "file"
    # The lock's file (`file`): one per workspace, beside its lake.
    path: str = "data/run.lock"
    # When another run holds the workspace: `auto` waits when a person is at a terminal and
    # exits at once when scheduled; `always` waits, `never` exits.
    wait: Literal["auto", "always", "never"] = "auto"
    # The longest wait, and how often a waiting run says what it waits for.
    max_wait_s: float = Field(3600.0, ge=0)
    progress_every_s: float = Field(10.0, gt=0)


class CanaryConfig(Strict):
    """How a new release takes traffic and when it is rolled back (README, "Shipping changes").

    On AWS the serving service deploys with ECS's canary strategy: `traffic_percent` of the
    requests go to the new release for `bake_minutes`, then all of them, and the old release is
    kept `bake_minutes` more; CloudWatch alarms on the figures both releases publish roll it
    back. Locally `serving.canary.judge` applies the same rules to two running services behind
    a weighted router. A rule breaks when the canary, over at least `min_requests`:
    - answers a larger share of requests with a 5xx than the stable release by more than
      `max_error_share`;
    - answers slower at p99 than `max_p99_ratio` times the stable release's p99 plus
      `p99_slack_ms`;
    - moves its scores: a decile (10th, 50th, 90th percentile) of its scores differs from the
      stable release's by more than `max_score_shift` of the stable release's 10-90 spread.
    """

    traffic_percent: float = Field(10.0, gt=0, lt=100)
    bake_minutes: int = Field(10, ge=1, le=1440)
    min_requests: int = Field(200, ge=1)
    max_error_share: float = Field(0.01, ge=0, le=1)
    max_p99_ratio: float = Field(1.5, ge=1)
    p99_slack_ms: float = Field(25.0, ge=0)
    max_score_shift: float = Field(0.25, gt=0)
    # Each worker publishes its figures (requests, 5xx, latencies, scores) with its release's
    # tag as CloudWatch embedded metrics in its log, what the alarms read (the aws profile).
    publish_figures: bool = False
    # How often a worker publishes them (and at most 100 values per figure per line).
    publish_interval_s: float = Field(60.0, gt=0)


class ServingConfig(Strict):
    """How one serving worker takes load (sizing: BENCHMARKS.md, "Serving under open-loop load").

    Past capacity a request is refused at once (503 with Retry-After) rather than queued for
    seconds: a new request is refused while the work already admitted would take longer than
    its budget (the worker's measured time per request times the requests admitted and not
    yet answered). The budget is `max_queue_ms` (a burst is absorbed), and `overload_queue_ms`
    once the worker has been busy without a break for longer than that (past capacity: answers
    stay fast, refusals are quick), until it has been idle a tenth of the last `max_queue_ms`
    (serving/guard.py, `ShedLoad`).
    """

    max_queue_ms: float = Field(100.0, gt=0)
    overload_queue_ms: float = Field(10.0, gt=0)
    # Worker processes, each with its own model, store client and queue: one per vCPU the
    # service may use (one worker answers one request at a time).
    workers: int = Field(1, ge=1)
    # A hard cap on requests being answered, split between the workers (BentoML's own 429),
    # behind the one above.
    max_concurrency: int = Field(64, ge=1)
    # The longest a request may take before it is answered 504.
    timeout_s: float = Field(10.0, gt=0)
    # /predict with `explain: true`: the largest contributions shown per prediction (the rest
    # are summed in `others`).
    explain_top: int = Field(5, ge=1)
    # Seconds a refused client is told to wait (the Retry-After header).
    retry_after_s: int = Field(1, ge=1)
    # An OpenTelemetry span for every prediction (for a tracing backend); off, the prediction
    # routes skip tracing, which costs more than the prediction itself at a few hundred
    # requests per second (BENCHMARKS.md), and their log lines still carry a request id.
    trace_requests: bool = False
    # BentoML's access line for every request (method, path, status, sizes, milliseconds,
    # request id). Off, a request that succeeds writes no line: its predictions are in the
    # prediction log and its counts and latency on /metrics (and on AWS the load balancer
    # keeps its own access log); warnings and errors are logged either way. Two JSON lines per
    # request cost about a sixth of the worker's time at a few hundred requests per second.
    access_log: bool = False
    # Shadow scoring: when the registry holds a `challenger` newer than the champion, `package`
    # puts it in the Bento beside the champion and the service scores it on every request too.
    # Clients are answered from the champion only; both are logged (the challenger's records
    # with source "shadow"), so `monitor` compares the two on live traffic before anyone
    # promotes. A failing challenger never fails a request (counted on /metrics).
    shadow_challenger: bool = False
    canary: CanaryConfig = Field(default_factory=CanaryConfig)

    @model_validator(mode="after")
    def _overload_budget_within_the_burst_one(self) -> ServingConfig:
        if self.overload_queue_ms > self.max_queue_ms:
            raise ValueError(
                f"serving.overload_queue_ms ({self.overload_queue_ms:g}) is the budget past "
                f"capacity: at most serving.max_queue_ms ({self.max_queue_ms:g})"
            )
        return self


class AwsNetworkConfig(Strict):
    cidr: str = "10.40.0.0/16"
    max_azs: int = Field(2, ge=2, le=3)
    # One NAT gateway is cheaper; one per AZ survives the loss of an AZ.
    nat_gateways: int = Field(1, ge=1, le=3)


class AwsDataConfig(Strict):
    # Raw drops move to infrequent access after this many days; replaced versions expire.
    landing_infrequent_access_days: int = Field(30, ge=30)
    noncurrent_version_days: int = Field(90, ge=1)
    access_log_days: int = Field(365, ge=1)
    # Keep the buckets (and their data) when the stacks are destroyed.
    retain_on_delete: bool = True


class AwsSparkConfig(Strict):
    # The EMR Serverless release and the Spark it runs: the code's Spark stages are tested on
    # that PySpark version too (`make test`, see the Makefile's `test-emr-spark`).
    release_label: str = "emr-spark-8.0.0"
    spark_version: str = Field("4.0.2", pattern=r"^\d+\.\d+\.\d+$")
    max_cpu: str = "16 vCPU"
    max_memory: str = "64 GB"
    idle_timeout_minutes: int = Field(15, ge=1)


class AwsMlflowConfig(Strict):
    cpu: int = 512
    memory_mib: int = 1024
    desired_tasks: int = Field(1, ge=0)
    db_instance_class: str = "t4g.micro"
    db_allocated_gib: int = Field(20, ge=20)
    db_multi_az: bool = True
    db_backup_days: int = Field(7, ge=1)
    port: int = 5000


class AwsRedisConfig(Strict):
    node_type: str = "cache.t4g.micro"
    # Replicas beside the primary (at least one for automatic failover).
    replicas: int = Field(1, ge=1, le=5)
    engine_version: str = "7.1"


class AwsServingConfig(Strict):
    cpu: int = 1024
    memory_mib: int = 2048
    min_tasks: int = Field(1, ge=1)
    max_tasks: int = Field(4, ge=1)
    target_cpu_percent: int = Field(60, ge=10, le=90)
    # ALB requests per target per minute at which another task starts.
    requests_per_target: int = Field(3000, ge=1)
    port: int = 3000
    # Off: an internal load balancer, reached from the VPC only (the default). On: an
    # internet-facing one, which must have a certificate (HTTPS only) and answers only requests
    # carrying one of its API keys (Secrets Manager, checked by the service).
    public: bool = False
    # An ACM certificate for HTTPS on the load balancer; empty: HTTP (internal only).
    certificate_arn: str = ""
    # Who may reach an internet-facing load balancer; an internal one admits the VPC's range.
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"])
    # Another environment this one takes its releases from (prod: `staging`): its chain
    # packages nothing, and `make promote` copies the image that served there, once it has
    # served at least `min_served_minutes`. Empty: the chain's release step ships its own.
    promote_from: str = Field("", pattern=r"^([a-z][a-z0-9]{1,9})?$")
    min_served_minutes: int = Field(60, ge=0)

    @model_validator(mode="after")
    def _opened_over_https(self) -> AwsServingConfig:
        if self.public and not self.certificate_arn:
            raise ValueError(
                "aws.serving.public opens /predict to the internet: it needs "
                "aws.serving.certificate_arn (an ACM certificate; MLOPS_CERTIFICATE_ARN in "
                "configs/aws.yaml), so that API keys and requests never travel in the clear"
            )
        return self


class AwsChainConfig(Strict):
    """The chain on AWS: a Step Functions state machine, one step per stage of configs/chain.py."""

    # When the chain runs on its own (an EventBridge schedule expression; empty: never on a
    # schedule). A new drop in the landing zone starts a run as well.
    schedule: str = Field("cron(0 6 * * ? *)", pattern=r"^((cron|rate)\(.+\))?$")
    run_on_new_drop: bool = True
    # The monitor runs after every run of the chain and, on its own, on this schedule (empty:
    # only after the chain); a scheduled monitor that decides to retrain runs the chain.
    monitor_schedule: str = Field("rate(6 hours)", pattern=r"^((cron|rate)\(.+\))?$")
    # Who is told when a run fails (an SNS email subscription, confirmed by its recipient;
    # empty: the topic only, subscribe to it yourself).
    notify_email: str = Field("", pattern=r"^([^@\s]+@[^@\s]+)?$")
    # A Spark job, and the release build, that runs longer than this is stopped (and fails).
    job_timeout_minutes: int = Field(120, ge=5)
    release_timeout_minutes: int = Field(60, ge=10)
    # The build image of the release (CodeBuild: Docker, Python 3.11).
    release_image: str = "aws/codebuild/standard:7.0"


class AwsDeliveryConfig(Strict):
    """The GitHub Actions pipeline's way in (infra/stacks/delivery.py): a deploy role that only
    a workflow job of this repository, in the GitHub Environment named as this profile, can
    assume through GitHub's OIDC provider; no long-lived keys."""

    # owner/name on GitHub; empty: no delivery stack (deploys run from a person's credentials).
    github_repository: str = Field("", pattern=r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)?$")
    # An account holds GitHub's OIDC provider once: false in the second environment that
    # shares an account with another (it then trusts the provider already there).
    create_oidc_provider: bool = True


class AwsConfig(Strict):
    """What the CDK stacks create (names and sizes); the `aws` profile's only infra input."""

    # Prefix of every stack and named resource; empty: the project's name, followed by the
    # environment's when one is set (`<project>-staging`, `<project>-prod`).
    name: str = Field("", pattern=r"^([a-z][a-z0-9-]{2,24})?$")
    # The deployment environment these stacks are (staging, prod); empty: the only one.
    environment: str = Field("", pattern=r"^([a-z][a-z0-9]{1,9})?$")
    # The profile these stacks were made from: what their jobs, tasks and builds load.
    profile: str = AWS_PROFILE
    log_retention_days: int = 30
    network: AwsNetworkConfig = Field(default_factory=AwsNetworkConfig)
    data: AwsDataConfig = Field(default_factory=AwsDataConfig)
    spark: AwsSparkConfig = Field(default_factory=AwsSparkConfig)
    mlflow: AwsMlflowConfig = Field(default_factory=AwsMlflowConfig)
    redis: AwsRedisConfig = Field(default_factory=AwsRedisConfig)
    serving: AwsServingConfig = Field(default_factory=AwsServingConfig)
    chain: AwsChainConfig = Field(default_factory=AwsChainConfig)
    delivery: AwsDeliveryConfig = Field(default_factory=AwsDeliveryConfig)

    @model_validator(mode="after")
    def _task_bounds(self) -> AwsConfig:
        if self.serving.min_tasks > self.serving.max_tasks:
            raise ValueError("serving.min_tasks is above serving.max_tasks")
        return self


class Names(Strict):
    """Every name derived from the project's: a fork renames `project` and nothing else."""

    project: str

    @property
    def snake(self) -> str:
        return self.project.replace("-", "_")

    @property
    def experiment(self) -> str:
        """The MLflow experiment."""
        return self.project

    @property
    def registered_model(self) -> str:
        """The MLflow registered model (and the BentoML model's name)."""
        return self.snake

    @property
    def feast_project(self) -> str:
        return self.snake

    def feature_service(self, version: int) -> str:
        """The FeatureService's name carries its version: a changed feature set gets a new name."""
        return f"{self.snake}_model_v{version}"

    @property
    def bento(self) -> str:
        """The BentoML service (and Bento) name."""
        return f"{self.snake}_service"

    @property
    def model_tag_variable(self) -> str:
        """The environment variable that tells the service which BentoML model to serve."""
        return f"{self.snake.upper()}_MODEL_TAG"

    @property
    def cloudwatch_namespace(self) -> str:
        """Where the monitor publishes its figures on AWS (configs/cloudwatch.py)."""
        return f"{self.project}/monitoring"

    @property
    def shadow_model_tag_variable(self) -> str:
        """The variable naming the BentoML model scored in shadow (the challenger), if any."""
        return f"{self.snake.upper()}_SHADOW_MODEL_TAG"

    @property
    def metric_prefix(self) -> str:
        """Prefix of the service's Prometheus metrics."""
        return self.snake


class Settings(Strict):
    env: str
    # The project's one name: MLflow, Feast, BentoML and AWS names all derive from it (each
    # use case's config.yaml sets its own).
    project: str = Field("mlops-platform", pattern=r"^[a-z][a-z0-9-]{2,24}$")
    # The use case package under usecases/ that this configuration runs.
    usecase: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # The use case's own settings, read by its code (usecases/<name>/config.yaml).
    params: dict[str, Any] = Field(default_factory=dict)
    paths: Paths = Field(default_factory=Paths)
    land: LandConfig = Field(default_factory=LandConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    run_lock: RunLockConfig = Field(default_factory=RunLockConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)

    @model_validator(mode="before")
    @classmethod
    def _aws_name_from_project(cls, data: Any) -> Any:
        """`aws.name` defaults to the project's name (one name derives every other), with the
        environment's after it; `aws.profile` is the profile loaded."""
        if isinstance(data, dict):
            aws = dict(data.get("aws") or {})
            if not aws.get("name"):
                project = data.get("project") or cls.model_fields["project"].default
                stage = aws.get("environment")
                aws["name"] = f"{project}-{stage}" if stage else project
            aws.setdefault("profile", data.get("env") or AWS_PROFILE)
            data = {**data, "aws": aws}
        return data

    @property
    def names(self) -> Names:
        return Names(project=self.project)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with `overrides` deep-merged in and validated again (for tests and the CLI)."""
        return _resolve_locations(
            _validate(_deep_merge(self.model_dump(), overrides), source="overrides")
        )

    def with_value(self, key: str, value: Any) -> Settings:
        """A copy with the setting at the dotted `key` replaced whole (a mapping too: nothing
        of the value it replaces is kept), validated again."""
        data = self.model_dump()
        node = data
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            below = node.setdefault(part, {})
            if not isinstance(below, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{key}: {where} is a value, not a section")
            node = below
        node[leaf] = value
        return _resolve_locations(_validate(data, source=f"--set {key}"))


def available_envs(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem != "base")


def load_settings(
    env: str | None = None,
    *,
    config_dir: Path = CONFIG_DIR,
    environ: Mapping[str, str] | None = None,
    usecase: str | None = None,
    usecases_dir: Path = USECASES_DIR,
) -> Settings:
    """Load base.yaml, the use case's config.yaml, overlay `<env>.yaml`, fill `${VAR}`s, validate.

    `env` defaults to $MLOPS_ENV, then `local`; `usecase` to $MLOPS_USECASE, then the
    `usecase` key of the files; $MLOPS_OVERRIDES (a JSON object) is merged last.
    Raises ConfigError naming what is wrong.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_VARIABLE) or DEFAULT_ENV
    overlay_file = config_dir / f"{env}.yaml"
    if not overlay_file.is_file():
        raise ConfigError(
            f"unknown environment {env!r}: no {overlay_file.name} in {config_dir} "
            f"(available: {', '.join(available_envs(config_dir))})"
        )
    base, overlay = _read_yaml(config_dir / "base.yaml"), _profile(config_dir, env)
    name = str(
        usecase or environ.get(USECASE_VARIABLE) or overlay.get("usecase") or base.get("usecase")
    )
    if name == "None":
        raise ConfigError(
            f"no use case: set `usecase` in {config_dir / 'base.yaml'} or {USECASE_VARIABLE}"
        )
    usecase_file = usecases_dir / name / "config.yaml"
    if not usecase_file.is_file():
        known = sorted(p.parent.name for p in usecases_dir.glob("*/config.yaml"))
        raise ConfigError(
            f"unknown use case {name!r}: no {usecase_file} (available: {', '.join(known)})"
        )
    merged = _deep_merge(_deep_merge(base, _read_yaml(usecase_file)), overlay)
    merged["usecase"] = name
    if environ.get(OVERRIDES_VARIABLE):
        merged = _deep_merge(merged, _overrides_from_environment(environ[OVERRIDES_VARIABLE]))
    merged["env"] = env
    filled = _with_usecase(_fill_placeholders(merged, environ, path=""), name)
    return _resolve_locations(_validate(filled, source=f"base.yaml + {overlay_file.name}"))


# A profile that is another's with some values changed names it: `extends: aws`.
EXTENDS_KEY = "extends"


def _profile(config_dir: Path, env: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The overlay of profile `env`: its file over the profile it `extends`, if any."""
    if env in seen:
        raise ConfigError(f"profiles extend each other in a loop: {' -> '.join((*seen, env))}")
    path = config_dir / f"{env}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{seen[-1]}.yaml extends {env!r}, and there is no {path.name} in {config_dir}"
        )
    overlay = _read_yaml(path)
    parent = overlay.pop(EXTENDS_KEY, None)
    if parent is None:
        return overlay
    return _deep_merge(_profile(config_dir, str(parent), (*seen, env)), overlay)


def aws_profiles(config_dir: Path = CONFIG_DIR) -> list[str]:
    """The profiles that deploy to AWS: `aws` and every profile extending it."""
    found = []
    for env in available_envs(config_dir):
        current, seen = env, set()
        while current not in seen:
            seen.add(current)
            if current == AWS_PROFILE:
                found.append(env)
                break
            parent = _read_yaml(config_dir / f"{current}.yaml").get(EXTENDS_KEY)
            if parent is None or not (config_dir / f"{parent}.yaml").is_file():
                break
            current = str(parent)
    return found


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"config file missing: {path}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path.name} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping at the top, not {type(data).__name__}")
    return data


def _overrides_from_environment(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{OVERRIDES_VARIABLE} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{OVERRIDES_VARIABLE} must be a JSON object")
    return data


# A section naming its back end (or model family) by one of these keys is replaced whole when an overlay names
# another back end: a Redis online store must not inherit a SQLite store's `path`.
_BACKEND_KEYS = ("type", "registry_type", "family")


def _deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            switched = any(
                name in value and value[name] != below.get(name) for name in _BACKEND_KEYS
            )
            merged[key] = dict(value) if switched else _deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _fill_placeholders(node: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, dict):
        return {
            k: _fill_placeholders(v, environ, f"{path}.{k}" if path else str(k))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fill_placeholders(v, environ, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (used as ${{{name}}})")

    return _PLACEHOLDER.sub(substitute, node)


def _with_usecase(node: Any, name: str) -> Any:
    """`{usecase}` in every string value replaced by the use case's name."""
    if isinstance(node, dict):
        return {key: _with_usecase(value, name) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_usecase(value, name) for value in node]
    if isinstance(node, str):
        return node.replace(_USECASE_TOKEN, name)
    return node


def _validate(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            if error["type"] == "extra_forbidden":
                problems.append(f"  {where}: unknown key")
            else:
                problems.append(f"  {where}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError(f"invalid configuration ({source}):\n" + "\n".join(problems)) from None


def _resolve(value: str) -> str:
    """A relative local path made absolute (against the working directory); URIs are kept."""
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def _resolve_store(store: dict[str, Any]) -> dict[str, Any]:
    path = store.get("path")
    # Feast's SQL registry and remote stores use URLs in `path`; only local files are resolved.
    if isinstance(path, str) and store.get("registry_type", "file") == "file" and "://" not in path:
        return {**store, "path": _resolve(path)}
    return store


def _resolve_locations(settings: Settings) -> Settings:
    """Make every local location absolute, so no stage depends on the directory it runs from."""
    paths = Paths(**{name: _resolve(getattr(settings.paths, name)) for name in Paths.model_fields})
    features = settings.features.model_copy(
        update={
            "registry": _resolve_store(settings.features.registry),
            "online_store": _resolve_store(settings.features.online_store),
        }
    )
    tracking_uri = settings.mlflow.tracking_uri
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        tracking_uri = "sqlite:///" + _resolve(tracking_uri.removeprefix("sqlite:///"))
    server = settings.mlflow.server
    if server is not None:
        server = server.model_copy(
            update={
                "artifacts_destination": _resolve(server.artifacts_destination),
                "home": _resolve(server.home),
            }
        )
    artifacts = settings.mlflow.artifact_location
    mlflow = settings.mlflow.model_copy(
        update={
            "tracking_uri": tracking_uri,
            "artifact_location": None if artifacts is None else _resolve(artifacts),
            "server": server,
        }
    )
    return settings.model_copy(update={"paths": paths, "features": features, "mlflow": mlflow})
