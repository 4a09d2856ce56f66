"""How a stage of the chain runs on AWS, shared by the state machine (infra/stacks/chain.py)
and the deploy commands (infra/deploy/): the EMR Serverless job of a stage, its environment,
and where its code and its run's handoff live. No CDK and no boto3 here: the stacks pass
tokens, the scripts pass the stacks' outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from configs.settings import ENV_VARIABLE

# The packed virtualenv (infra/images/emr/Dockerfile) and where each Spark process unpacks it:
# the Dockerfile packs it with `--python-prefix /home/hadoop/<ARCHIVE_ALIAS>` to match.
VENV_ARCHIVE = "pipelines-venv.tar.gz"
ARCHIVE_ALIAS = "environment"
ENTRY_POINT = "run_pipelines.py"
# Prefixes of the lake bucket: the uploaded code (entry point, packed venv, source bundle of
# the release build), the EMR logs, and each run's handoff file (`runs/<execution>/...`).
CODE_PREFIX = "code/"
LOG_PREFIX = "emr-logs/"
RUNS_PREFIX = "runs/"
# The prediction log (configs/aws.yaml paths.prediction_log): the service and batch scoring
# write it, the monitor reads it.
PREDICTION_LOG_PREFIX = "prediction-log/"
# What the monitor decided (configs/aws.yaml paths.monitoring).
MONITORING_PREFIX = "monitoring/"
SOURCE_BUNDLE = "source.zip"
# The platform's runtime dependencies with the hash of every file (`make lock` writes it): the
# release build and the EMR image install from it with `pip --require-hashes`, so a build
# installs exactly what was tested, and a file the package index changes is refused.
RUNTIME_LOCK = "runtime-lock.txt"
HANDOFF_FILE = "handoff.json"
# `<VARIABLE>_SECRET_ARN` holds the ARN of the secret whose value `<VARIABLE>` is to hold.
SECRET_ARN_SUFFIX = "_SECRET_ARN"  # pragma: allowlist secret
# The MLflow accounts of the chain (made by the MLflow image, infra/images/mlflow/accounts.py):
# the jobs' (not an admin: it manages what it creates) and the release build's (reads, and edits
# only the registered model). Their passwords are read from Secrets Manager.
MLFLOW_JOB_USER = "pipelines"
MLFLOW_RELEASE_USER = "release"


def spark_submit(
    lake_bucket: str, arguments: Sequence[str], environment: Mapping[str, str]
) -> dict[str, Any]:
    """The `sparkSubmit` job driver running `python -m pipelines <arguments>` (the same entry
    point as local) with the aws profile's endpoints, and the ARNs of its secrets, in the
    driver's environment."""
    code = f"s3://{lake_bucket}/{CODE_PREFIX.rstrip('/')}"
    python = f"./{ARCHIVE_ALIAS}/bin/python"  # the archive's own Python 3.11
    driver_env = [
        f"--conf spark.emr-serverless.driverEnv.{name}={value}"
        for name, value in sorted(environment.items())
    ]
    return {
        "entryPoint": f"{code}/{ENTRY_POINT}",
        "entryPointArguments": ["--env", environment[ENV_VARIABLE], *arguments],
        "sparkSubmitParameters": " ".join(
            [
                f"--conf spark.archives={code}/{VENV_ARCHIVE}#{ARCHIVE_ALIAS}",
                f"--conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON={python}",
                f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={python}",
                f"--conf spark.executorEnv.PYSPARK_PYTHON={python}",
                *driver_env,
            ]
        ),
    }


def job_environment(
    *,
    landing_bucket: str,
    lake_bucket: str,
    redis_endpoint: str,
    redis_user: str,
    redis_token_secret_arn: str,
    tracking_uri: str,
    mlflow_password_secret_arn: str,
    profile: str,
) -> dict[str, str]:
    """What the aws profile reads from the environment (configs/aws.yaml): endpoints by value,
    secrets by ARN (the entry point reads them with the job's role; a value would show in the
    job's configuration)."""
    return {
        ENV_VARIABLE: profile,
        "MLOPS_LANDING_BUCKET": landing_bucket,
        "MLOPS_LAKE_BUCKET": lake_bucket,
        "MLOPS_REDIS_ENDPOINT": redis_endpoint,
        "MLOPS_REDIS_USER": redis_user,
        "MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN": redis_token_secret_arn,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_USERNAME": MLFLOW_JOB_USER,
        "MLFLOW_TRACKING_PASSWORD_SECRET_ARN": mlflow_password_secret_arn,
    }


def handoff_location(lake_bucket: str, run: str) -> str:
    """The handoff file of one run of the chain: each stage reads what the stages before it
    handed off (a model version, the champion) and adds its own."""
    return f"s3://{lake_bucket}/{handoff_key(run)}"


def handoff_key(run: str) -> str:
    """The handoff file's key in the lake bucket."""
    return f"{RUNS_PREFIX}{run}/{HANDOFF_FILE}"


def job_name(stage: str) -> str:
    return f"pipelines-{stage}"
