"""The batch chain's declaration: every stage in order, what runs it, whether it needs Spark,
and where it runs on AWS.

Data, not code: `pipelines` runs it locally, and `infra` builds the AWS state machine from it,
one step per stage in this order (the infra never imports the pipelines).
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a stage runs in the `aws` profile's state machine:
# EMR: an EMR Serverless job, `python -m pipelines <stage>` with the stage's own entry point
#      (every stage that reads the offline store needs Spark there: the store is Spark's);
# RELEASE: the release build (CodeBuild), which packages the AWS champion, containerizes and
#      pushes it, rolls the service to it and sends a smoke request;
# ARRIVAL: not a step: the data arrives in the landing zone (`make deploy` uploads the
#      example drops; a new drop starts a run).
EMR, RELEASE, ARRIVAL = "emr", "release", "arrival"


@dataclass(frozen=True)
class StageSpec:
    name: str
    help: str
    # "module:function", called with the chain's StageContext.
    runner: str
    spark: bool = False
    # Part of `train` (the chain); the others run on demand.
    in_chain: bool = True
    aws: str = EMR
    # Writes to the online store (Feast's materialize; `apply` deletes a removed view's keys):
    # on AWS only these stages hold the store's writer password, the others sign in read-only.
    writes_online_store: bool = False


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "land",
        "write the use case's raw files into the landing zone as drops",
        "pipelines.land:run",
        aws=ARRIVAL,
    ),
    StageSpec(
        "collect",
        "Spark: new landing drops -> bronze and staged silver; quarantine bad drops",
        "pipelines.collect:run",
        spark=True,
    ),
    StageSpec(
        "validate",
        "Great Expectations gate: publish staged silver that passes, stop on failure",
        "pipelines.validate:run",
        spark=True,
    ),
    StageSpec(
        "features",
        "Spark: silver -> feature tables, checked by GX and registered with Feast",
        "pipelines.features:run",
        spark=True,
        writes_online_store=True,
    ),
    # `train` on the command line is the whole chain; this stage alone is `fit`.
    StageSpec(
        "fit",
        "Feast point-in-time training set -> a model, tracked and registered in MLflow",
        "pipelines.fit:run",
    ),
    StageSpec(
        "promote",
        "champion/challenger gate: promote the new version only if it is better",
        "pipelines.promote:run",
    ),
    StageSpec(
        "materialize",
        "load the champion's features into the online store, incrementally",
        "pipelines.materialize:run",
        writes_online_store=True,
    ),
    StageSpec(
        "report",
        "an HTML report of the run for people who are not engineers",
        "pipelines.report:run",
    ),
    StageSpec(
        "package",
        "bentoml build: a Bento of the service pinned to the champion version",
        "pipelines.package:run",
        aws=RELEASE,
    ),
    StageSpec(
        "batch-predict",
        "Spark: score a day's or month's rows with the champion",
        "pipelines.batch_predict:run",
        spark=True,
        in_chain=False,
    ),
    StageSpec(
        "monitor",
        "the prediction log's newest window against the champion: drift, live metrics, retrain?",
        "pipelines.monitor:run",
        in_chain=False,
    ),
)
BY_NAME = {stage.name: stage for stage in STAGES}
CHAIN: tuple[str, ...] = tuple(stage.name for stage in STAGES if stage.in_chain)
# The chain's stages up to the gate on silver, and those of them that run on Spark.
DATA_STAGES: tuple[str, ...] = ("land", "collect", "validate")
SPARK_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.spark and s.in_chain)
# The chain as the AWS state machine runs it: (stage, EMR | RELEASE), in order.
AWS_CHAIN: tuple[tuple[str, str], ...] = tuple(
    (s.name, s.aws) for s in STAGES if s.in_chain and s.aws != ARRIVAL
)
# The stages that write to the online store (the others only read it).
ONLINE_STORE_WRITERS: tuple[str, ...] = tuple(s.name for s in STAGES if s.writes_online_store)
# The stage the AWS state machine runs after every run of the chain, and on its own on the
# monitoring schedule (where a decision to retrain runs the chain).
AWS_MONITOR: str = "monitor"
assert BY_NAME[AWS_MONITOR].aws == EMR and not BY_NAME[AWS_MONITOR].in_chain
