"""Each identity's AWS calls, recorded while the code runs against moto, judged against the
policy its role was synthesized with (tests/infra/policy_check.py says how, and why not moto's
own IAM enforcement). A call the role cannot make fails here, naming the call."""

from __future__ import annotations

import json
from typing import Any

import boto3

from infra import deploy
from infra.config import infra_config
from tests.infra import policy_check
from tests.infra.conftest import REGION, STACK, USECASE_ENVIRON
from tests.infra.test_deploy import Pusher, _handoff, create_stacks

CHAIN_STACK = f"{STACK}-chain"


def _recording_session(recorder: policy_check.Recorder) -> Any:
    return recorder.attach(boto3.session.Session(region_name=REGION))


def _bucket_keys(session: Any) -> dict[str, str]:
    s3, keys = session.client("s3"), {}
    for bucket in s3.list_buckets()["Buckets"]:
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket["Name"])[
                "ServerSideEncryptionConfiguration"
            ]["Rules"]
        except s3.exceptions.ClientError:
            continue
        for rule in rules:
            key = rule["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID")
            if key:
                keys[bucket["Name"]] = key
    return keys


def _release_build_calls(templates: dict[str, Any], session: Any) -> list[policy_check.Call]:
    """The buildspec's own `aws s3 cp` of the source bundle, as the project's role."""
    (project,) = [
        r["Properties"]
        for r in templates["chain"]["Resources"].values()
        if r["Type"] == "AWS::CodeBuild::Project"
    ]
    lake = deploy.stack_outputs(session.client("cloudformation"), f"{STACK}-data")["LakeBucket"]
    copies = [
        c for c in _commands(project["Source"]["BuildSpec"]) if c.startswith("aws s3 cp s3://")
    ]
    assert copies, "the buildspec copies its source from the lake"
    keys = [c.split()[3].removeprefix("s3://").partition("/")[2] for c in copies]
    return [policy_check.Call("s3:GetObject", f"arn:aws:s3:::{lake}/{key}") for key in keys]


def _commands(spec: Any) -> list[str]:
    if isinstance(spec, str):
        spec = json.loads(spec)
    elif "Fn::Join" in spec:
        spec = json.loads("".join(p if isinstance(p, str) else "LAKE" for p in spec["Fn::Join"][1]))
    return [c for phase in spec["phases"].values() for c in phase.get("commands", [])]


def _project_variable(templates: dict[str, Any], name: str, session: Any) -> str:
    """A plain variable of the release build's environment, as CloudFormation resolves it
    (an import from the stacks' exports in moto)."""
    (project,) = [
        r["Properties"]
        for r in templates["chain"]["Resources"].values()
        if r["Type"] == "AWS::CodeBuild::Project"
    ]
    (value,) = [
        v["Value"] for v in project["Environment"]["EnvironmentVariables"] if v["Name"] == name
    ]
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        exports = session.client("cloudformation").list_exports()["Exports"]
        value = next(e["Value"] for e in exports if e["Name"] == value["Fn::ImportValue"])
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        for placeholder, resolved in {
            "${AWS::Partition}": "aws",
            "${AWS::AccountId}": policy_check.ACCOUNT,
            "${AWS::Region}": REGION,
        }.items():
            value = value.replace(placeholder, resolved)
    assert isinstance(value, str), value
    return value


def test_the_release_build_may_make_every_call_it_makes(
    aws, synthesized, templates, monkeypatch
) -> None:
    """`python -m infra.deploy release` as the release build runs it: package (recorded),
    check the image, push it (a stand-in lands it in moto's ECR), roll the serving stack,
    record the release, smoke it; every call judged against the build role's policy."""
    create_stacks(aws, synthesized, templates)
    # the build's environment, as the project sets it
    role_variable = deploy.CLOUDFORMATION_ROLE_VARIABLE
    monkeypatch.setenv(role_variable, _project_variable(templates, role_variable, aws))
    config = infra_config(environ=USECASE_ENVIRON)
    recorder = policy_check.Recorder(REGION, bucket_keys=_bucket_keys(aws))
    session = _recording_session(recorder)
    handoff = _handoff(aws, "run-1", "3")
    deploy.release(session, config, handoff, run=Pusher("svc:first1", aws.client("ecr")))
    # a second run with the same champion, and a rollback's reads, as the same build
    deploy.release(
        session, config, _handoff(aws, "run-2", "3"), run=Pusher("svc:x", aws.client("ecr"))
    )

    calls = [*recorder.calls, *_release_build_calls(templates, aws)]
    role = policy_check.role_logical_id(
        templates["chain"], "AWS::CodeBuild::Project", "ServiceRole"
    )
    policies = policy_check.role_policies(aws, CHAIN_STACK, role)
    assert policies, "the release build's role has no policy"
    # the release made the calls this test is about
    assert "ecr:DescribeImages" in recorder.operations
    assert "cloudformation:UpdateStack" in recorder.operations
    assert policy_check.refused(policies, calls) == []


def test_the_check_refuses_a_call_the_policy_does_not_grant(aws, synthesized, templates) -> None:
    """The check itself: with the statement granting ecr:DescribeImages taken out, the
    release's calls are refused, naming the call."""
    create_stacks(aws, synthesized, templates)
    role = policy_check.role_logical_id(
        templates["chain"], "AWS::CodeBuild::Project", "ServiceRole"
    )
    policies = policy_check.role_policies(aws, CHAIN_STACK, role)
    call = policy_check.Call(
        "ecr:DescribeImages",
        f"arn:aws:ecr:{REGION}:{policy_check.ACCOUNT}:repository/"
        + deploy.stack_outputs(aws.client("cloudformation"), f"{STACK}-serving")[
            "RepositoryUri"
        ].split("/", 1)[1],
    )
    assert policy_check.refused(policies, [call]) == []
    stripped = [
        {
            **p,
            "Statement": [
                s
                for s in policy_check._listed(p["Statement"])
                if "ecr:DescribeImages" not in policy_check._listed(s.get("Action", []))
            ],
        }
        for p in policies
    ]
    assert policy_check.refused(stripped, [call]) == [str(call)]


# -- CloudFormation's own calls when the release rolls the image --------------------------------
SERVING_STACK = f"{STACK}-serving"
# Calls a handler's schema lists for kinds of target the serving stack does not have: the
# scalable target is an ECS service's, not a Lambda function's provisioned concurrency.
NOT_THIS_TARGET = ("lambda:",)


def _references(node: Any) -> set[str]:
    """What a piece of a template depends on: resources (Ref, GetAtt), parameters (Ref) and
    conditions (Fn::If)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if "Ref" in node:
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            found.add(node["Fn::GetAtt"][0])
        if "Fn::If" in node:
            found.add(node["Fn::If"][0])
        if "Condition" in node and isinstance(node["Condition"], str):
            found.add(node["Condition"])
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def rolled_resources(template: dict[str, Any], parameter: str) -> dict[str, str]:
    """Which resources a change of `parameter` alone touches, and how ("replace" when a
    property CloudFormation can only set at creation changes, else "update"), by the resource
    types' registry schemas (cfn-lint ships them): a replaced resource's new physical id
    changes whatever refers to it, and so on until nothing more changes."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    changed = {parameter} | {
        name
        for name, expression in template.get("Conditions", {}).items()
        if parameter in _references(expression)
    }
    touched: dict[str, str] = {}
    while True:
        before = dict(touched)
        for logical_id, resource in template["Resources"].items():
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource["Type"]).schema
            create_only = {
                p.removeprefix("/properties/").split("/")[0]
                for p in schema.get("createOnlyProperties", [])
            }
            properties = {
                name
                for name, value in resource.get("Properties", {}).items()
                if _references(value) & changed
            }
            if properties:
                touched[logical_id] = "replace" if properties & create_only else "update"
                if touched[logical_id] == "replace":
                    changed.add(logical_id)
        if touched == before:
            return touched


def _handler_actions(resource_type: str, how: str) -> list[str]:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource_type).schema["handlers"]
    # a replacement creates the new resource, then deletes the old one (or, rolled back, the new)
    wanted = ("create", "delete") if how == "replace" else ("update",)
    actions = {a for h in wanted for a in handlers[h]["permissions"]}
    return sorted(a for a in actions if not a.startswith(NOT_THIS_TARGET))


def _deploy_calls(session: Any, template: dict[str, Any]) -> list[policy_check.Call]:
    """Every call the resource handlers may make when the image is rolled, each on the
    resource it acts on (moto's physical ids), as IAM would judge it."""
    cloudformation = session.client("cloudformation")
    physical = {
        r.get("LogicalResourceId", ""): r.get("PhysicalResourceId", "")
        for r in cloudformation.describe_stack_resources(StackName=SERVING_STACK)["StackResources"]
    }
    prefix = f"arn:aws:{{}}:{REGION}:{policy_check.ACCOUNT}:"
    (service_id,) = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::ECS::Service"
    ]
    service = physical[service_id]
    cluster_service = service.split(":service/", 1)[1]
    (task_id,) = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::ECS::TaskDefinition"
    ]
    task = template["Resources"][task_id]["Properties"]
    iam = session.client("iam")
    task_roles = [
        iam.get_role(RoleName=physical[task[p]["Fn::GetAtt"][0]])["Role"]["Arn"]
        for p in ("TaskRoleArn", "ExecutionRoleArn")
    ]
    # the role ECS moves the canary's listener weights with: passed to ECS itself
    (balanced,) = template["Resources"][service_id]["Properties"]["LoadBalancers"]
    canary_role = balanced["AdvancedConfiguration"]["RoleArn"]["Fn::GetAtt"][0]
    passed = [(r, "ecs-tasks.amazonaws.com") for r in task_roles] + [
        (iam.get_role(RoleName=physical[canary_role])["Role"]["Arn"], "ecs.amazonaws.com")
    ]
    on_resource = {
        "AWS::ECS::Service": service,
        "AWS::ECS::TaskDefinition": physical[task_id],
    }
    calls = []
    for logical_id, how in rolled_resources(template, "ImageTag").items():
        kind = template["Resources"][logical_id]["Type"]
        for action in _handler_actions(kind, how):
            prefix_of = action.split(":", 1)[0]
            if action in ("iam:PassRole", "iam:GetRole"):
                for role, to in passed if kind == "AWS::ECS::Service" else passed[:2]:
                    context = (("iam:PassedToService", to),) if action == "iam:PassRole" else ()
                    calls.append(policy_check.Call(action, role, context, because=kind))
                continue
            if action in ("ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"):
                resource = prefix.format("ecs") + f"service-deployment/{cluster_service}/d1"
            elif prefix_of == "ecs":
                resource = on_resource.get(kind, service)
            elif prefix_of == "application-autoscaling":
                resource = prefix.format(prefix_of) + "scalable-target/0a1b2c3d"
            elif kind == "AWS::CloudWatch::Alarm":
                # an alarm's physical id is its name (moto's CloudFormation makes no alarm)
                named = template["Resources"][logical_id]["Properties"]["AlarmName"]
                resource = prefix.format("cloudwatch") + f"alarm:{named}"
            elif prefix_of == "cloudwatch":
                resource = (
                    prefix.format("cloudwatch")
                    + f"alarm:TargetTracking-service/{cluster_service}-AlarmHigh-1"
                )
            else:
                raise AssertionError(f"{action} ({kind}): no resource for it in this test")
            calls.append(policy_check.Call(action, resource, because=kind))
    if "BootstrapVersion" in template.get("Parameters", {}):
        name = template["Parameters"]["BootstrapVersion"]["Default"].lstrip("/")
        calls.append(
            policy_check.Call("ssm:GetParameters", prefix.format("ssm") + f"parameter/{name}")
        )
    return calls


def test_rolling_the_image_is_within_the_serving_stacks_deploy_role(
    aws, synthesized, templates
) -> None:
    """What CloudFormation calls, with the role the release passes it, when only `ImageTag`
    changes: the handlers' permissions of every resource that change touches (from the
    resource types' registry schemas: the task definition replaced, the service and its
    scalable target updated), each judged against the deploy role's policy on this stack's
    own resources."""
    create_stacks(aws, synthesized, templates)
    template = templates["serving"]
    rolled = rolled_resources(template, "ImageTag")
    kinds = {template["Resources"][k]["Type"]: how for k, how in rolled.items()}
    assert kinds == {
        "AWS::ECS::TaskDefinition": "replace",
        "AWS::ECS::Service": "update",
        "AWS::ApplicationAutoScaling::ScalableTarget": "update",
        # the canary's alarms compare the new tag's figures with the previous tag's
        "AWS::CloudWatch::Alarm": "update",
    }
    role = next(
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith("DeployRole")
    )
    policies = policy_check.role_policies(aws, SERVING_STACK, role)
    calls = _deploy_calls(aws, template)
    assert {"ecs:RegisterTaskDefinition", "ecs:UpdateService", "iam:PassRole"} <= {
        c.action for c in calls
    }
    assert policy_check.refused(policies, calls) == []
    # and nothing beyond the stack: another service, another role, another cluster's alarms
    foreign = [
        policy_check.Call(
            "ecs:UpdateService", f"arn:aws:ecs:{REGION}:{policy_check.ACCOUNT}:service/other/api"
        ),
        policy_check.Call(
            "iam:PassRole",
            f"arn:aws:iam::{policy_check.ACCOUNT}:role/Admin",
            (("iam:PassedToService", "ecs-tasks.amazonaws.com"),),
        ),
        policy_check.Call(
            "iam:PassRole",
            f"arn:aws:iam::{policy_check.ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{policy_check.ACCOUNT}-{REGION}",
            (("iam:PassedToService", "cloudformation.amazonaws.com"),),
        ),
        policy_check.Call("s3:GetObject", "arn:aws:s3:::any/thing"),
    ]
    assert len(policy_check.refused(policies, foreign)) == len(foreign)


def _managed_policy(session: Any, stack: str, logical_prefix: str) -> dict[str, Any]:
    """The document of a managed policy of `stack`, as moto's CloudFormation created it."""
    (arn,) = [
        r["PhysicalResourceId"]
        for r in session.client("cloudformation").describe_stack_resources(StackName=stack)[
            "StackResources"
        ]
        if r.get("LogicalResourceId", "").startswith(logical_prefix)
        and r.get("ResourceType") == "AWS::IAM::ManagedPolicy"
    ]
    iam = session.client("iam")
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    return dict(json.loads(document) if isinstance(document, str) else document)


def test_an_operator_may_deploy_watch_roll_back_and_run_spark_with_the_operator_policy(
    aws, synthesized, templates
) -> None:
    """A person or CI role with the chain stack's operator policy, and nothing else, runs
    `make deploy` (cdk through the bootstrap's roles, uploads, lands, starts a run), `make
    status`, `infra.deploy releases`, `make rollback` (through the serving stack's deploy role)
    and `infra.deploy spark`: every call judged against that policy."""
    from tests.infra.test_deploy import Recorder as Commands
    from tests.infra.test_deploy import which_all

    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    # two releases (by the release build) so that there is one to roll back to
    for run, champion, bento in (("run-1", "3", "svc:first1"), ("run-2", "4", "svc:second2")):
        deploy.release(
            aws, config, _handoff(aws, run, champion), run=Pusher(bento, aws.client("ecr"))
        )
    recorder = policy_check.Recorder(REGION, bucket_keys=_bucket_keys(aws))
    session = _recording_session(recorder)

    deploy.deploy(
        session, config, app_python="python", run=Commands(s3=session.client("s3")), which=which_all
    )
    deploy.status(session, config)
    deploy.read_releases(session.client("ssm"), config)
    deploy.rollback(session, config)
    deploy.run_on_emr(session, config, [["batch-predict", "--month", "2013-12"], ["materialize"]])

    policy = _managed_policy(aws, CHAIN_STACK, "OperatorPolicy")
    operations = set(recorder.operations)
    assert {
        "cloudformation:UpdateStack",
        "states:StartExecution",
        "s3:PutObject",
        "emr-serverless:StartJobRun",
    } <= operations
    assert policy_check.refused([policy], recorder.calls) == []
