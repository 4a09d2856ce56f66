"""`make destroy ENV=aws` against the stacks as moto created them: what is in the account
before and after, by listing every kind of resource the platform makes.

Stand-in: `cdk destroy` is CloudFormation's DeleteStack on each stack, newest first, as the CDK
CLI calls it (moto's CloudFormation keeps what a template retains, and fails to delete a
protected database as RDS does). moto limits, named: its CloudFormation deletes neither route
tables (the VPC would stay) nor ECS clusters; the stand-in removes those through their APIs, as
CloudFormation would, and nothing else. AWS-managed keys (`alias/aws/...`: DynamoDB's, which
moto makes for the lock table as AWS does) are AWS's, not the platform's, and not counted. RDS's own final snapshot at deletion (moto takes none) is not checked here; `destroy`
names it from RDS after the stacks are gone.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra import deploy
from infra.config import infra_config
from tests.infra import policy_check
from tests.infra.conftest import REGION, STACK, USECASE_ENVIRON
from tests.infra.test_deploy import ORDER, _handoff, create_stacks

STACK_OF = f"{STACK}-{{}}"


def inventory(session: Any) -> dict[str, set[str]]:
    """Every resource of the kinds the platform makes, by kind, as `Kept` names them."""
    s3, kms, ecr, rds = (session.client(n) for n in ("s3", "kms", "ecr", "rds"))
    ssm, logs, iam, ecs = (session.client(n) for n in ("ssm", "logs", "iam", "ecs"))
    dynamodb, sns, sfn = (session.client(n) for n in ("dynamodb", "sns", "stepfunctions"))
    # moto 5.2.5's DescribeKey fails on a key whose policy its CloudFormation stored as an
    # object: the keys' states are read from moto's own backend (a moto limit).
    from moto.kms.models import kms_backends

    aws_managed = {
        a.get("TargetKeyId")
        for a in kms.list_aliases()["Aliases"]
        if a["AliasName"].startswith("alias/aws/")
    }
    states = {
        key_id: key.key_state
        for key_id, key in kms_backends[policy_check.ACCOUNT][REGION].keys.items()
        if key_id not in aws_managed
    }
    return {
        "AWS::S3::Bucket": {b["Name"] for b in s3.list_buckets()["Buckets"]},
        "AWS::KMS::Key": {
            k["KeyId"] for k in kms.list_keys()["Keys"] if states.get(k["KeyId"]) == "Enabled"
        },
        "AWS::ECR::Repository": {
            r["repositoryName"] for r in ecr.describe_repositories()["repositories"]
        },
        "AWS::RDS::DBInstance": {
            d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]
        },
        "AWS::RDS::DBSnapshot": {
            d["DBSnapshotIdentifier"] for d in rds.describe_db_snapshots()["DBSnapshots"]
        },
        "AWS::SSM::Parameter": {
            p["Name"]
            for p in ssm.describe_parameters()["Parameters"]
            if not p["Name"].startswith("/cdk-bootstrap/")
        },
        "AWS::Logs::LogGroup": {g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]},
        "AWS::IAM::Role": {r["RoleName"] for r in iam.list_roles()["Roles"]},
        "AWS::ECS::Cluster": {
            c["clusterArn"]
            for c in ecs.describe_clusters(clusters=ecs.list_clusters()["clusterArns"])["clusters"]
            if c["status"] == "ACTIVE"
        },
        "AWS::DynamoDB::Table": set(dynamodb.list_tables()["TableNames"]),
        "AWS::SNS::Topic": {t["TopicArn"] for t in sns.list_topics()["Topics"]},
        "AWS::StepFunctions::StateMachine": {
            m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
        },
    }


def _added(after: dict[str, set[str]], before: dict[str, set[str]]) -> dict[str, set[str]]:
    return {kind: names - before[kind] for kind, names in after.items() if names - before[kind]}


class CdkDestroy:
    """Stands in for `npx aws-cdk@2 destroy --all`: DeleteStack on each stack, newest first;
    stops like the CLI at the first stack that fails to go."""

    def __init__(self, session: Any) -> None:
        self.cloudformation = session.client("cloudformation")
        self.ec2 = session.client("ec2")
        self.ecs = session.client("ecs")
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], input_text: str | None = None) -> str:
        self.commands.append(command)
        assert command[3:5] == ["destroy", "--all"], command
        for concern in reversed(ORDER):
            name = STACK_OF.format(concern)
            if concern == "network":
                self._route_tables_moto_leaves()
            clusters = [
                r["PhysicalResourceId"]
                for r in self.cloudformation.describe_stack_resources(StackName=name)[
                    "StackResources"
                ]
                if r.get("ResourceType") == "AWS::ECS::Cluster"
            ]
            try:
                self.cloudformation.delete_stack(StackName=name)
            except self.cloudformation.exceptions.ClientError as err:
                raise deploy.DeployError(f"{name}: {err}") from None
            for cluster in clusters:  # what moto's CloudFormation leaves
                self.ecs.delete_cluster(cluster=cluster)
            left = [
                s
                for s in self.cloudformation.list_stacks()["StackSummaries"]
                if s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"
            ]
            if left:
                raise deploy.DeployError(f"{name}: {left[0]['StackStatus']}")
        return ""

    def _route_tables_moto_leaves(self) -> None:
        for table in self.ec2.describe_route_tables()["RouteTables"]:
            if any(a.get("Main") for a in table["Associations"]):
                continue
            for association in table["Associations"]:
                self.ec2.disassociate_route_table(
                    AssociationId=association["RouteTableAssociationId"]
                )
            self.ec2.delete_route_table(RouteTableId=table["RouteTableId"])


@pytest.fixture
def deployed(aws, synthesized, templates) -> dict[str, set[str]]:
    """The platform in moto, released once (so the release history exists), and a log group
    ECS makes itself; returns what was there before any of it."""
    before = inventory(aws)
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    deploy.record_release(
        aws.client("ssm"), config, deploy.Release("v1", "svc:v1", "2026-12-01T06:00:00+00:00")
    )
    cluster = deploy.stack_outputs(aws.client("cloudformation"), STACK_OF.format("serving"))
    aws.client("logs").create_log_group(
        logGroupName=f"/aws/ecs/containerinsights/{cluster['ClusterName']}/performance"
    )
    _handoff(aws, "run-1", "1")  # an object in the lake
    # moto's CloudFormation drops the database's DeletionProtection: set as the template says
    (database,) = [
        r["Properties"]
        for r in templates["database"]["Resources"].values()
        if r["Type"] == "AWS::RDS::DBInstance"
    ]
    assert database["DeletionProtection"] is True
    aws.client("rds").modify_db_instance(
        DBInstanceIdentifier=database["DBInstanceIdentifier"],
        DeletionProtection=True,
        ApplyImmediately=True,
    )
    return before


def test_destroy_snapshots_the_database_lifts_its_protection_and_names_all_it_keeps(
    aws, deployed
) -> None:
    config = infra_config(environ=USECASE_ENVIRON)
    questions: list[str] = []
    cdk = CdkDestroy(aws)
    kept = deploy.destroy(aws, config, ask=lambda q: questions.append(q) or True, run=cdk)

    assert len(questions) == 1 and "protected from deletion" in questions[0]
    stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
    assert {s["StackStatus"] for s in stacks} == {"DELETE_COMPLETE"}
    left = _added(inventory(aws), deployed)
    named: dict[str, set[str]] = {}
    for item in kept:
        named.setdefault(item.kind, set()).add(item.name)
    # everything left is named, and everything named is left
    assert left == named
    # what the README promises to keep
    assert len(named["AWS::S3::Bucket"]) == 3  # landing, lake, access logs
    assert named["AWS::ECR::Repository"] and named["AWS::KMS::Key"]
    assert {f"/{STACK}/serving/releases"} == named["AWS::SSM::Parameter"]
    (snapshot,) = named["AWS::RDS::DBSnapshot"]
    assert snapshot.startswith(f"{STACK}-mlflow-before-destroy-")
    assert any("containerinsights" in g for g in named["AWS::Logs::LogGroup"])


def test_destroy_deletes_nothing_when_the_database_s_protection_is_not_lifted(
    aws, deployed
) -> None:
    config = infra_config(environ=USECASE_ENVIRON)
    before = inventory(aws)
    cdk = CdkDestroy(aws)
    with pytest.raises(deploy.DeployError, match="nothing was deleted"):
        deploy.destroy(aws, config, ask=lambda q: False, run=cdk)
    assert cdk.commands == [] and inventory(aws) == before


def test_a_protected_database_stops_cdk_destroy_half_done(aws, deployed) -> None:
    """Why destroy lifts the protection: without it the CDK stops at the database stack, with
    the stacks after it gone and the network, data and database still there (the old `make
    destroy`)."""
    with pytest.raises(deploy.DeployError, match=f"{STACK}-database"):
        CdkDestroy(aws)(["npx", "--yes", "aws-cdk@2", "destroy", "--all", "--force"])
    assert f"{STACK}-mlflow" in inventory(aws)["AWS::RDS::DBInstance"]


def test_purge_removes_what_destroy_keeps(aws, deployed) -> None:
    config = infra_config(environ=USECASE_ENVIRON)
    kept = deploy.destroy(aws, config, yes=True, purge_kept=True, run=CdkDestroy(aws))
    # only the keys, which KMS deletes after a waiting period
    assert {k.kind for k in kept} == {"AWS::KMS::Key"}
    assert all("deleted in 7 days" in k.why for k in kept)
    assert _added(inventory(aws), deployed) == {}
