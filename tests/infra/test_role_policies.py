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
from tests.infra.conftest import REGION
from tests.infra.test_deploy import Pusher, _handoff, create_stacks

CHAIN_STACK = "flight-delay-chain"


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
    lake = deploy.stack_outputs(session.client("cloudformation"), "flight-delay-data")["LakeBucket"]
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


def _project_variable(templates: dict[str, Any], name: str) -> str:
    """A plain variable of the release build's environment, as CloudFormation resolves it."""
    (project,) = [
        r["Properties"]
        for r in templates["chain"]["Resources"].values()
        if r["Type"] == "AWS::CodeBuild::Project"
    ]
    (value,) = [
        v["Value"] for v in project["Environment"]["EnvironmentVariables"] if v["Name"] == name
    ]
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
    monkeypatch.setenv(role_variable, _project_variable(templates, role_variable))
    config = infra_config(environ={})
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
        + deploy.stack_outputs(aws.client("cloudformation"), "flight-delay-serving")[
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
