"""`destroy`: every stack, after the database's final snapshot; names what it keeps."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from configs.settings import AwsConfig
from infra.config import (
    stack_concerns,
)
from infra.deploy.common import (
    CDK_CLI,
    DeployError,
    Run,
    check_credentials,
    run_command,
    stack_outputs,
)
from infra.deploy.releases import releases_parameter


# -- tearing down ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Kept:
    """Something `destroy` leaves in the account: its kind (a CloudFormation resource type), its
    name, and why."""

    kind: str
    name: str
    why: str = "kept on purpose"

    def __str__(self) -> str:
        return f"{self.kind:<24} {self.name}  ({self.why})"


# A KMS key cannot be deleted at once, only scheduled (7 to 30 days).
KMS_PENDING_DAYS = 7


def _ask(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:  # no terminal: never a yes
        return False


def existing_stacks(cloudformation: Any, config: AwsConfig) -> list[str]:
    """The platform's stacks that exist, in the order they were created."""
    found = []
    for concern in stack_concerns(config):
        name = f"{config.name}-{concern}"
        try:
            cloudformation.describe_stacks(StackName=name)
        except cloudformation.exceptions.ClientError:
            continue
        found.append(name)
    return found


def retained_resources(cloudformation: Any, stacks: Sequence[str]) -> list[Kept]:
    """What deleting `stacks` leaves, read from their deployed templates: every resource whose
    DeletionPolicy is Retain (data buckets, keys, the image repository)."""
    kept = []
    for stack in stacks:
        template = _template(cloudformation, stack)
        physical = {
            r.get("LogicalResourceId", ""): r.get("PhysicalResourceId", "")
            for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        }
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("DeletionPolicy") == "Retain" and physical.get(logical_id):
                kept.append(Kept(resource["Type"], physical[logical_id], f"retained by {stack}"))
    return kept


def _template(cloudformation: Any, stack: str) -> dict[str, Any]:
    body = cloudformation.get_template(StackName=stack)["TemplateBody"]
    return dict(json.loads(body) if isinstance(body, str) else body)


def made_outside_the_stacks(session: Any, config: AwsConfig, stacks: Sequence[str]) -> list[Kept]:
    """What the platform made at run time, which no stack owns: the release history parameter,
    and the log groups the services create themselves (ECS Container Insights, per cluster)."""
    kept = []
    ssm, logs = session.client("ssm"), session.client("logs")
    try:
        ssm.get_parameter(Name=releases_parameter(config))
        kept.append(Kept("AWS::SSM::Parameter", releases_parameter(config), "the release history"))
    except ssm.exceptions.ParameterNotFound:
        pass
    cloudformation = session.client("cloudformation")
    clusters = [
        stack_outputs(cloudformation, stack).get("ClusterName", "")
        for stack in stacks
        if stack.endswith(("-serving", "-mlflow"))
    ]
    for cluster in filter(None, clusters):
        prefix = f"/aws/ecs/containerinsights/{cluster}/"
        for group in logs.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]:
            kept.append(Kept("AWS::Logs::LogGroup", group["logGroupName"], "made by ECS"))
    return kept


def lift_deletion_protection(
    rds: Any, database: str, *, yes: bool, ask: Callable[[str], bool]
) -> Kept | None:
    """Snapshot the MLflow database and lift its deletion protection (asked first), so that
    `cdk destroy` can delete it. None when it is not protected."""
    instance = rds.describe_db_instances(DBInstanceIdentifier=database)["DBInstances"][0]
    if not instance.get("DeletionProtection"):
        return None
    question = (
        f"The MLflow database {database} is protected from deletion. Take a snapshot of it "
        "now, then lift the protection so that it can be deleted (its registry and runs stay "
        "in the snapshot)?"
    )
    if not (yes or ask(question)):
        raise DeployError(
            f"nothing was deleted: {database} keeps its deletion protection, and `cdk destroy` "
            "would stop at it, half done. Run again and answer yes (or pass --yes)."
        )
    snapshot = f"{database}-before-destroy-{datetime.now(UTC):%Y%m%d%H%M%S}"
    print(f"snapshotting {database} as {snapshot} (minutes for a large database)")
    rds.create_db_snapshot(DBSnapshotIdentifier=snapshot, DBInstanceIdentifier=database)
    rds.get_waiter("db_snapshot_available").wait(
        DBSnapshotIdentifier=snapshot, WaiterConfig={"Delay": 15, "MaxAttempts": 240}
    )
    rds.modify_db_instance(
        DBInstanceIdentifier=database, DeletionProtection=False, ApplyImmediately=True
    )
    return Kept("AWS::RDS::DBSnapshot", snapshot, "the MLflow database before destroy")


def purge(session: Any, kept: Sequence[Kept]) -> list[Kept]:
    """Remove what `destroy` kept; returns what remains (KMS keys, pending deletion, and
    anything of a kind not known here)."""
    s3, ecr, logs, rds, ssm, kms = (
        session.client(n) for n in ("s3", "ecr", "logs", "rds", "ssm", "kms")
    )
    remaining = []
    for item in kept:
        print(f"removing {item.kind} {item.name}")
        if item.kind == "AWS::S3::Bucket":
            _empty_bucket(s3, item.name)
            s3.delete_bucket(Bucket=item.name)
        elif item.kind == "AWS::ECR::Repository":
            ecr.delete_repository(repositoryName=item.name, force=True)
        elif item.kind == "AWS::Logs::LogGroup":
            logs.delete_log_group(logGroupName=item.name)
        elif item.kind == "AWS::RDS::DBSnapshot":
            rds.delete_db_snapshot(DBSnapshotIdentifier=item.name)
        elif item.kind == "AWS::SSM::Parameter":
            ssm.delete_parameter(Name=item.name)
        elif item.kind == "AWS::KMS::Key":
            kms.schedule_key_deletion(KeyId=item.name, PendingWindowInDays=KMS_PENDING_DAYS)
            remaining.append(Kept(item.kind, item.name, f"deleted in {KMS_PENDING_DAYS} days"))
        else:
            remaining.append(Kept(item.kind, item.name, "not removed by --purge"))
    return remaining


def _empty_bucket(s3: Any, bucket: str) -> None:
    """Every version and delete marker of a versioned bucket, a thousand at a time."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [
            {"Key": o["Key"], "VersionId": o["VersionId"]}
            for o in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def destroy(
    session: Any,
    config: AwsConfig,
    *,
    yes: bool = False,
    purge_kept: bool = False,
    ask: Callable[[str], bool] = _ask,
    run: Run = run_command,
) -> list[Kept]:
    """Delete every stack. The MLflow database is snapshotted and its deletion protection lifted
    first (asked). What stays (data buckets, keys, the image repository, snapshots, the release
    history, log groups the services made) is named; with `purge_kept` it is removed too
    (asked). Returns what stays."""
    check_credentials(session)
    cloudformation, rds = session.client("cloudformation"), session.client("rds")
    stacks = existing_stacks(cloudformation, config)
    if not stacks:
        print("no stack of the platform is there: nothing to destroy")
    kept = retained_resources(cloudformation, stacks)
    kept += made_outside_the_stacks(session, config, stacks)
    database_stack = f"{config.name}-database"
    database = (
        stack_outputs(cloudformation, database_stack).get("DatabaseInstance")
        if database_stack in stacks
        else None
    )
    if purge_kept and not (
        yes
        or ask(
            "--purge also removes what destroy keeps (the data buckets with every object, the "
            "image repository, the snapshots, the release history; keys are scheduled for "
            "deletion). Nothing of it can be recovered. Go on?"
        )
    ):
        raise DeployError("nothing was deleted: --purge was not confirmed")
    if database:
        snapshot = lift_deletion_protection(rds, database, yes=yes, ask=ask)
        kept += [snapshot] if snapshot else []
    if stacks:
        run([*CDK_CLI, "destroy", "--all", "--force", "--app", f"{sys.executable} -m infra.app"])
    if database:
        named = {k.name for k in kept}
        kept += [
            Kept("AWS::RDS::DBSnapshot", s["DBSnapshotIdentifier"], "the database's final snapshot")
            for s in rds.describe_db_snapshots(DBInstanceIdentifier=database)["DBSnapshots"]
            if s["DBSnapshotIdentifier"] not in named
        ]
    if purge_kept:
        kept = purge(session, kept)
    if kept:
        print("left in the account (`python -m infra.deploy destroy --purge` removes them):")
        for item in kept:
            print(f"  {item}")
    return kept
