"""One `python -m pipelines` command as an EMR Serverless job, and the Spark code it runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from configs.chain import ONLINE_STORE_WRITERS
from configs.settings import AwsConfig
from infra import jobs
from infra.config import (
    IMAGE_PLATFORM,
)
from infra.deploy.common import JOB_POLL_S, DeployError, Run, stack_outputs


# -- Spark on EMR Serverless (one command on demand; the chain's jobs are the state machine's)
def spark_job_driver(
    lake_bucket: str, command: Sequence[str], environment: dict[str, str]
) -> dict[str, Any]:
    """The job driver of `python -m pipelines <command>`, as the state machine's steps run it."""
    return {"sparkSubmit": jobs.spark_submit(lake_bucket, command, environment)}


def job_environment(
    cloudformation: Any, config: AwsConfig, *, writes_online_store: bool = False
) -> dict[str, str]:
    """What the aws profile reads from the environment, from the stacks' outputs: signed in to
    the online store as its writer only for a stage that writes it."""
    data = stack_outputs(cloudformation, f"{config.name}-data")
    store = stack_outputs(cloudformation, f"{config.name}-feature-store")
    mlflow = stack_outputs(cloudformation, f"{config.name}-mlflow")
    side = "Writer" if writes_online_store else "Reader"
    token = "RedisAuthTokenSecret" if writes_online_store else "RedisReaderTokenSecret"
    return jobs.job_environment(
        landing_bucket=data["LandingBucket"],
        lake_bucket=data["LakeBucket"],
        redis_endpoint=store["RedisEndpoint"],
        redis_user=store[f"Redis{side}User"],
        redis_token_secret_arn=store[token],
        tracking_uri=mlflow["TrackingUri"],
        mlflow_password_secret_arn=mlflow["JobsPasswordSecret"],
        profile=config.profile,
    )


def run_spark_jobs(
    emr: Any,
    application_id: str,
    role_arn: str,
    lake_bucket: str,
    environment: dict[str, str],
    commands: Sequence[Sequence[str]],
    *,
    poll_s: float = JOB_POLL_S,
    timeout_s: float = 3600,
) -> dict[str, str]:
    """Run each command (`python -m pipelines` arguments) as a job, one after another; stop at
    the first that does not succeed."""
    states = {}
    for command in commands:
        label = " ".join(command)
        started = emr.start_job_run(
            applicationId=application_id,
            executionRoleArn=role_arn,
            name=jobs.job_name(command[0]),
            jobDriver=spark_job_driver(lake_bucket, command, environment),
            configurationOverrides={
                "monitoringConfiguration": {
                    "s3MonitoringConfiguration": {"logUri": f"s3://{lake_bucket}/{jobs.LOG_PREFIX}"}
                }
            },
        )
        deadline = time.monotonic() + timeout_s
        while True:
            state = emr.get_job_run(applicationId=application_id, jobRunId=started["jobRunId"])[
                "jobRun"
            ]["state"]
            if state in ("SUCCESS", "FAILED", "CANCELLED") or time.monotonic() > deadline:
                break
            time.sleep(poll_s)
        states[label] = state
        print(f"EMR Serverless job {label}: {state}")
        if state != "SUCCESS":
            raise DeployError(
                f"the {label} job ended {state}: see s3://{lake_bucket}/{jobs.LOG_PREFIX} "
                f"(job run {started['jobRunId']})"
            )
    return states


def run_on_emr(
    session: Any, config: AwsConfig, commands: Sequence[Sequence[str]]
) -> dict[str, str]:
    """`python -m pipelines` commands as EMR Serverless jobs, in order (the deployed code); a
    stage that writes the online store runs as the feature writer's role, the others as the job
    role, as in the state machine."""
    cloudformation = session.client("cloudformation")
    spark = stack_outputs(cloudformation, f"{config.name}-spark")
    states: dict[str, str] = {}
    for command in commands:
        writes = command[0] in ONLINE_STORE_WRITERS
        environment = job_environment(cloudformation, config, writes_online_store=writes)
        states |= run_spark_jobs(
            session.client("emr-serverless"),
            spark["ApplicationId"],
            spark["FeatureWriterRoleArn" if writes else "JobRoleArn"],
            environment["MLOPS_LAKE_BUCKET"],
            environment,
            [command],
        )
    return states


# -- code, data and the first run ----------------------------------------------------------
def build_spark_code(run: Run, workdir: Path) -> list[Path]:
    """The entry point and the packed virtualenv (Docker, Amazon Linux, linux/amd64)."""
    run(
        [
            "docker",
            "build",
            "--platform",
            IMAGE_PLATFORM,
            "-f",
            "infra/images/emr/Dockerfile",
            "-o",
            f"type=local,dest={workdir}",
            ".",
        ]
    )
    return [workdir / jobs.ENTRY_POINT, workdir / jobs.VENV_ARCHIVE]
