"""`deploy`: the stacks, the code and the example data uploaded, the chain's first run started."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs.settings import ENV_VARIABLE, AwsConfig
from configs.source import COMMIT_FILE, git_commit
from infra import jobs
from infra.config import (
    RUNTIME_VARIABLES,
    stack_concerns,
)
from infra.deploy.common import (
    CDK_CLI,
    ROOT,
    DeployError,
    Run,
    check_credentials,
    check_docker_daemon,
    check_tools,
    failing_events,
    run_command,
    stack_outputs,
)
from infra.deploy.spark import build_spark_code, job_environment

SHA_METADATA = "sha256"


@dataclass
class Deployed:
    """What a deploy changed: files uploaded, drops landed, the run it started (if any)."""

    uploaded: list[str]
    landed: list[str]
    run: str | None


def source_bundle(target: Path, root: Path = ROOT) -> Path:
    """The release build's source: every file git tracks, as it is in the working tree, and the
    commit it was made from (`configs.source.COMMIT_FILE`), in a zip with fixed timestamps (the same tree gives the same bytes, so an unchanged bundle is
    not uploaded again)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(n for n in listed.split("\0") if n and (root / n).is_file()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = ((root / name).stat().st_mode & 0o777) << 16
            bundle.writestr(info, (root / name).read_bytes(), zipfile.ZIP_DEFLATED)
        # The bundle has no git history: the commit it was made from travels beside the code.
        info = zipfile.ZipInfo(COMMIT_FILE, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        bundle.writestr(info, git_commit(root) + "\n", zipfile.ZIP_DEFLATED)
    return target


def upload_if_changed(s3: Any, bucket: str, key: str, path: Path) -> bool:
    """Upload `path` to s3://bucket/key unless the object there has the same sha256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(SHA_METADATA) == digest:
            return False
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SHA_METADATA: digest}})
    return True


def upload_code(s3: Any, lake_bucket: str, run: Run, workdir: Path) -> list[str]:
    """The Spark jobs' code and the release build's source, each sent only when changed.
    Returns the S3 locations that changed."""
    files = [*build_spark_code(run, workdir), source_bundle(workdir / jobs.SOURCE_BUNDLE)]
    changed = []
    for path in files:
        key = f"{jobs.CODE_PREFIX}{path.name}"
        if upload_if_changed(s3, lake_bucket, key, path):
            changed.append(f"s3://{lake_bucket}/{key}")
    return changed


def land_example_data(s3: Any, run: Run, app_python: str, environment: dict[str, str]) -> list[str]:
    """`python -m pipelines --env <profile> land`: the use case's example drops into the landing
    zone (a drop already there is never overwritten). Returns the drops that are new."""
    bucket = environment["MLOPS_LANDING_BUCKET"]
    before = _keys(s3, bucket)
    # Land reads no secret: what the profile names but land does not use stays a marker.
    values = {name: f"not-read-by-land-{name.lower()}" for name in RUNTIME_VARIABLES}
    values |= environment
    assignments = [f"{name}={value}" for name, value in sorted(values.items())]
    profile = environment[ENV_VARIABLE]
    run(["env", *assignments, app_python, "-m", "pipelines", "--env", profile, "land"])
    return sorted(f"s3://{bucket}/{key}" for key in _keys(s3, bucket) - before)


def _keys(s3: Any, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def state_machine_arn(cloudformation: Any, config: AwsConfig) -> str:
    return stack_outputs(cloudformation, f"{config.name}-chain")["StateMachineArn"]


def start_run(stepfunctions: Any, machine: str, reason: str) -> str:
    name = f"deploy-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    started = stepfunctions.start_execution(
        stateMachineArn=machine, name=name, input=json.dumps({"started_by": reason})
    )
    return str(started["executionArn"])


# -- the whole deploy ----------------------------------------------------------------------
def deploy(
    session: Any,
    config: AwsConfig,
    *,
    app_python: str,
    land: bool = True,
    run: Run = run_command,
    which: Callable[[str], str | None] = shutil.which,
) -> Deployed:
    identity = check_credentials(session)
    check_tools(which)
    check_docker_daemon(run)
    print(f"deploying {config.name} to {session.region_name} as {identity}")
    infra_python = sys.executable
    cloudformation = session.client("cloudformation")
    try:
        run(
            [
                *CDK_CLI,
                "deploy",
                "--all",
                "--require-approval",
                "never",
                "--app",
                f"{infra_python} -m infra.app",
            ]
        )
    except DeployError as err:
        failed = failing_events(
            cloudformation, [f"{config.name}-{c}" for c in stack_concerns(config)]
        )
        raise DeployError(f"{err}\n\nwhat failed, from the stacks' events:\n{failed}") from None
    environment = job_environment(cloudformation, config)
    s3 = session.client("s3")
    with tempfile.TemporaryDirectory(prefix="emr-code-") as workdir:
        uploaded = upload_code(s3, environment["MLOPS_LAKE_BUCKET"], run, Path(workdir))
    landed = land_example_data(s3, run, app_python, environment) if land else []
    landing = f"s3://{environment['MLOPS_LANDING_BUCKET']}/"
    if not land:
        print(f"example data not landed: put your drops under {landing} (each starts a run)")
    stepfunctions = session.client("stepfunctions")
    machine = state_machine_arn(cloudformation, config)
    ran_before = stepfunctions.list_executions(stateMachineArn=machine, maxResults=1)["executions"]
    reason = (
        "new code" if uploaded else "new drops" if landed else "" if ran_before else "first deploy"
    )
    started = start_run(stepfunctions, machine, reason) if reason else None
    for location in uploaded:
        print(f"uploaded {location}")
    print(f"{len(landed)} new drop(s) landed in {landing}")
    if started:
        print(f"started the chain ({reason}): {started}")
        print("follow it with `make status ENV=aws` (a first run takes about an hour)")
    else:
        print("nothing changed: no run started")
    return Deployed(uploaded, landed, started)
