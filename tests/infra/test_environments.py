"""Staging and prod: the aws profile twice, in stacks of their own, one code path. Prod packages
nothing: a release reaches it as the image that served in staging long enough, copied into
prod's repository and rolled, recorded with where it came from. Both environments' stacks are
created through moto's CloudFormation in one account (as a team sharing one would)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from configs.settings import ENV_VARIABLE
from infra import deploy
from infra.config import infra_config
from tests.infra.conftest import REGION, USECASE_ENVIRON
from tests.infra.test_deploy import Pusher, _handoff, create_stacks

PROFILES = ("staging", "prod")


def _config(profile: str) -> Any:
    return infra_config(environ={**USECASE_ENVIRON, ENV_VARIABLE: profile})


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per profile: (its stacks by concern, its templates by concern)."""
    from infra.app import build_app

    made = {}
    for profile in PROFILES:
        outdir = tmp_path_factory.mktemp(f"cdk.out-{profile}")
        app, stacks = build_app(_config(profile), REGION, outdir=str(outdir))
        app.synth()
        templates = {
            concern: json.loads((Path(outdir) / f"{stack.stack_name}.template.json").read_text())
            for concern, stack in stacks.items()
        }
        made[profile] = ((stacks, outdir), templates)
    return made


def test_each_environment_is_the_aws_profile_under_its_own_names(environments) -> None:
    staging, prod = _config("staging"), _config("prod")
    assert (staging.profile, prod.profile) == ("staging", "prod")
    assert staging.name.endswith("-staging") and prod.name.endswith("-prod")
    assert (staging.serving.promote_from, prod.serving.promote_from) == ("", "staging")
    # the tasks and jobs of each load their own profile
    for profile in PROFILES:
        _, templates = environments[profile]
        serving = json.dumps(templates["serving"])
        assert f'"Name": "{ENV_VARIABLE}", "Value": "{profile}"' in serving


def test_prod_takes_the_image_that_served_in_staging(aws, environments) -> None:
    for profile in PROFILES:
        create_stacks(aws, *environments[profile])
    staging, prod = _config("staging"), _config("prod")
    ecr = aws.client("ecr")
    # staging's chain releases; prod's release step packages nothing
    handed = _handoff(aws, "run-1", "3", staging.name)
    deploy.release(aws, staging, handed, run=Pusher("svc:abc123", ecr))
    idle = Pusher("svc:other", ecr)
    assert deploy.release(aws, prod, _handoff(aws, "run-1", "3", prod.name), run=idle) is None
    assert idle.commands == []
    served = deploy.read_releases(aws.client("ssm"), staging)[-1]
    since = datetime.fromisoformat(served.deployed_at)

    # too soon: refused, prod untouched
    copier = Pusher("svc:abc123", ecr)
    with pytest.raises(deploy.DeployError, match="less than the 60 minutes"):
        deploy.promote(aws, prod, staging, now=since + timedelta(minutes=59), run=copier)
    assert copier.commands == []
    cloudformation = aws.client("cloudformation")
    assert deploy.current_image_tag(cloudformation, f"{prod.name}-serving") == "none"

    promoted = deploy.promote(aws, prod, staging, now=since + timedelta(minutes=61), run=copier)
    assert promoted is not None
    assert deploy.current_image_tag(cloudformation, f"{prod.name}-serving") == "abc123"
    # the same image, copied (nothing rebuilt), recorded with where it came from
    prod_uri = deploy.stack_outputs(cloudformation, f"{prod.name}-serving")["RepositoryUri"]
    staging_uri = deploy.stack_outputs(cloudformation, f"{staging.name}-serving")["RepositoryUri"]
    assert [c[:2] for c in copier.commands if c[0] == "docker"][1:] == [
        ["docker", "pull"],
        ["docker", "tag"],
        ["docker", "push"],
    ]
    assert copier.commands[-1] == ["docker", "push", f"{prod_uri}:abc123"]
    assert f"{staging_uri}:abc123" in copier.commands[-3]
    assert deploy.image_exists(ecr, prod_uri, "abc123")
    (record,) = deploy.read_releases(aws.client("ssm"), prod)
    assert (record.kind, record.model_version, record.digest) == ("promote", "3", served.digest)
    assert f"served in staging since {served.deployed_at}" in record.reason
    # again: nothing to do
    again = Pusher("svc:abc123", ecr)
    assert deploy.promote(aws, prod, staging, now=since + timedelta(hours=2), run=again) is None
    assert again.commands == []
    assert len(deploy.read_releases(aws.client("ssm"), prod)) == 1


def test_the_pipeline_s_roles_may_do_what_its_jobs_do(aws, environments) -> None:
    """Each job's calls, judged against its environment's delivery role as moto's
    CloudFormation made it (its inline policy and the operator policy it carries): staging
    waits for its run and lists its releases; prod promotes and lists."""
    from tests.infra import policy_check
    from tests.infra.test_role_policies import _bucket_keys, _managed_policy, _recording_session

    for profile in PROFILES:
        create_stacks(aws, *environments[profile])
    staging, prod = _config("staging"), _config("prod")
    ecr = aws.client("ecr")
    deploy.release(
        aws, staging, _handoff(aws, "run-1", "3", staging.name), run=Pusher("svc:abc123", ecr)
    )
    since = datetime.fromisoformat(deploy.read_releases(aws.client("ssm"), staging)[-1].deployed_at)
    aws.client("stepfunctions").start_execution(
        stateMachineArn=deploy.state_machine_arn(aws.client("cloudformation"), staging)
    )
    for profile, job in (
        ("staging", lambda s: (deploy.status(s, staging), deploy.serving_line(s, staging))),
        (
            "prod",
            lambda s: (
                deploy.promote(
                    s, prod, staging, now=since + timedelta(hours=2), run=Pusher("svc:abc123", ecr)
                ),
                deploy.release_lines(deploy.read_releases(s.client("ssm"), prod)),
            ),
        ),
    ):
        config = _config(profile)
        recorder = policy_check.Recorder(REGION, bucket_keys=_bucket_keys(aws))
        job(_recording_session(recorder))
        resources = environments[profile][1]["delivery"]["Resources"]
        role = next(
            k
            for k, r in resources.items()
            if r["Type"] == "AWS::IAM::Role" and k.startswith("DeployRole")
        )
        # moto's CloudFormation attaches no managed policy to a role (ManagedPolicyArns): the
        # template's attachment is read here, and the policy it imports judged with the rest
        (attached,) = resources[role]["Properties"]["ManagedPolicyArns"]
        assert "OperatorPolicy" in attached["Fn::ImportValue"]
        policies = [
            *policy_check.role_policies(aws, f"{config.name}-delivery", role),
            _managed_policy(aws, f"{config.name}-chain", "OperatorPolicy"),
        ]
        assert len(policies) == 1 + (profile == "prod"), policies
        assert policy_check.refused(policies, recorder.calls) == [], profile
        assert recorder.calls, profile
