"""The chain on AWS, read from the synthesized templates: the state machine's steps one by one
against the chain's own declaration (configs/chain.py), what starts it, what it may do, and
the release build it ends with. Each test would have failed on the platform before the state
machine: no step ran fit, promote or materialize in AWS, nothing ran the chain after the
first deploy, the serving image was packaged from the laptop's champion."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from configs import cloudwatch, handoff
from configs.chain import ARRIVAL, AWS_CHAIN, AWS_MONITOR, CHAIN, EMR, RELEASE, STAGES
from infra import jobs
from infra.config import REDIS_READER, infra_config, landing_key_prefix, monitoring_alarms
from infra.stacks.chain import (
    CLOUDFORMATION_ROLE_VARIABLE,
    EMR_SYNC_RULE,
    HANDOFF_VARIABLE,
    LOCK_TAKEN_ERROR,
    MODE_KEY,
    MONITOR_MODE,
    READ_DECISION_STATE,
    RETRAIN_CHOICE,
    SCHEDULED_MONITOR_STATE,
    TAKE_LOCK_STATE,
)
from tests.infra.conftest import STACK, USECASE_ENVIRON


def _render(node: Any) -> Any:
    """A CloudFormation value with its references spelled out: `<Ref X>`, `<import X>`..."""
    if isinstance(node, dict):
        if "Fn::Join" in node:
            separator, parts = node["Fn::Join"]
            return separator.join(str(_render(p)) for p in parts)
        if "Ref" in node:
            return "aws" if node["Ref"] == "AWS::Partition" else f"<Ref {node['Ref']}>"
        if "Fn::ImportValue" in node:
            return f"<import {node['Fn::ImportValue']}>"
        if "Fn::Sub" in node:
            return node["Fn::Sub"]
        if "Fn::GetAtt" in node:
            return f"<GetAtt {'.'.join(node['Fn::GetAtt'])}>"
        return {k: _render(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_render(v) for v in node]
    return node


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


@pytest.fixture(scope="module")
def machine(templates) -> dict[str, Any]:
    (resource,) = _resources(templates["chain"], "AWS::StepFunctions::StateMachine")
    return json.loads(_render(resource["Properties"]["DefinitionString"]))


def _walk(machine: dict[str, Any]) -> list[str]:
    """The states a run that succeeds goes through, from StartAt (a Choice by its Default)."""
    states, path, name = machine["States"], [], machine["StartAt"]
    while name:
        path.append(name)
        state = states[name]
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    return path


def test_the_steps_are_the_chain_s_stages_in_its_order(machine) -> None:
    path = _walk(machine)
    assert path[:2] == [TAKE_LOCK_STATE, "Monitor only?"]
    assert path[-1] == "Done" and machine["States"]["Done"]["Type"] == "Succeed"
    assert path[-2] == "Give back the run lock"
    # every stage of `train` but the data's arrival, in the declared order: the model is
    # fitted, gated and materialized in AWS before anything is released; then the monitor
    assert path[-3] == AWS_MONITOR
    stages = path[2:-3]
    assert (
        stages == [name for name in CHAIN if dict(AWS_CHAIN).get(name)] == [n for n, _ in AWS_CHAIN]
    )
    assert [s.name for s in STAGES if s.in_chain and s.aws == ARRIVAL] == ["land"]
    for required in ("collect", "validate", "features", "fit", "promote", "materialize", "package"):
        assert required in stages, required
    assert stages.index("materialize") < stages.index("package") == len(stages) - 1


@pytest.mark.parametrize(
    ("state_name", "stage", "where"),
    [
        *[(stage, stage, where) for stage, where in AWS_CHAIN],
        (AWS_MONITOR, AWS_MONITOR, EMR),
        (SCHEDULED_MONITOR_STATE, AWS_MONITOR, EMR),
    ],
)
def test_each_step_runs_its_stage_where_the_declaration_says(
    machine, state_name, stage, where
) -> None:
    state = machine["States"][state_name]
    assert state["Type"] == "Task"
    if where == EMR:
        assert state["Resource"] == "arn:aws:states:::emr-serverless:startJobRun.sync"
        parameters = state["Parameters"]
        assert parameters["Name"] == jobs.job_name(stage)
        assert parameters["ApplicationId"].startswith(f"<import {STACK}-spark:")
        submit = parameters["JobDriver"]["SparkSubmit"]
        assert submit["EntryPoint"].endswith(f"/{jobs.CODE_PREFIX}{jobs.ENTRY_POINT}")
        # the same entry point as local, with this run's handoff file, then the stage
        arguments = submit["EntryPointArguments.$"]
        assert arguments.startswith("States.Array('--env', 'aws', '--handoff-file', States.Format(")
        assert f"/{jobs.RUNS_PREFIX}{{}}/{jobs.HANDOFF_FILE}', $$.Execution.Name)" in arguments
        assert arguments.endswith(f", '{stage}')")
        job = submit["SparkSubmitParameters"]
        assert f"{jobs.VENV_ARCHIVE}#{jobs.ARCHIVE_ALIAS}" in job
        # secrets travel by ARN, never by value
        assert "driverEnv.MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN=<import" in job
        assert "driverEnv.MLOPS_REDIS_AUTH_TOKEN=" not in job
        assert "MLFLOW_TRACKING_PASSWORD=" not in job
        assert (
            parameters["ExecutionTimeoutMinutes"]
            == infra_config(environ=USECASE_ENVIRON).chain.job_timeout_minutes
        )
        # each job's run is kept in the run's state, under its stage, beside the input
        assert state["ResultPath"] == f"$.jobs.{stage}" and stage.isidentifier()
    else:
        assert where == RELEASE
        assert state["Resource"] == "arn:aws:states:::codebuild:startBuild.sync"
        overrides = {o["Name"]: o for o in state["Parameters"]["EnvironmentVariablesOverride"]}
        assert "$$.Execution.Name" in overrides[HANDOFF_VARIABLE]["Value.$"]


@pytest.mark.parametrize(
    "stage",
    [*[name for name, _ in AWS_CHAIN], AWS_MONITOR, SCHEDULED_MONITOR_STATE, READ_DECISION_STATE],
)
def test_a_failed_step_notifies_and_fails_the_run(machine, stage) -> None:
    """Nothing after a failed step runs (so the previous champion keeps serving), the topic
    is told which stage failed and why, and the execution ends failed."""
    (catch,) = machine["States"][stage]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    notify = machine["States"][catch["Next"]]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    message = notify["Parameters"]["Message"]
    assert message["stage"] == stage and message["cause.$"] == "$.failure.Cause"
    give_back = machine["States"][notify["Next"]]
    assert give_back["Resource"] == "arn:aws:states:::dynamodb:deleteItem"
    assert machine["States"][give_back["Next"]]["Type"] == "Fail"


def test_a_run_takes_the_lock_with_a_conditional_write_first(machine) -> None:
    """Read here; executed (two runs at once, a lock left by a dead run) in
    tests/infra/test_chain_executed.py."""
    take = machine["States"][machine["StartAt"]]
    assert machine["StartAt"] == TAKE_LOCK_STATE
    assert take["Resource"] == "arn:aws:states:::dynamodb:putItem"
    assert take["Parameters"]["ConditionExpression"] == "attribute_not_exists(lock_id)"
    (taken,) = take["Catch"]
    assert taken["ErrorEquals"] == [LOCK_TAKEN_ERROR]


def test_a_schedule_and_every_new_drop_start_the_chain(templates) -> None:
    config = infra_config(environ=USECASE_ENVIRON)
    rules = _resources(templates["chain"], "AWS::Events::Rule")
    scheduled = [
        r
        for r in rules
        if "ScheduleExpression" in r["Properties"] and "Input" not in r["Properties"]["Targets"][0]
    ]
    assert [r["Properties"]["ScheduleExpression"] for r in scheduled] == [config.chain.schedule]
    (drop,) = [r for r in rules if "EventPattern" in r["Properties"]]
    pattern = drop["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [
        {"prefix": landing_key_prefix(environ=USECASE_ENVIRON)}
    ]
    assert landing_key_prefix(environ=USECASE_ENVIRON) == "landing/"
    for rule in rules:
        (target,) = rule["Properties"]["Targets"]
        assert "Chain" in json.dumps(target["Arn"])
    # the landing bucket sends its object events to EventBridge (without it, no rule fires)
    (landing,) = [
        r
        for name, r in templates["data"]["Resources"].items()
        if r["Type"] == "AWS::S3::Bucket" and name.startswith("Landing")
    ]
    notifications = landing["Properties"]["NotificationConfiguration"]
    assert notifications["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_the_monitor_on_its_schedule_runs_the_chain_when_it_decides_to_retrain(
    machine, templates
) -> None:
    """A scheduled run (its input names the monitor mode) runs the monitor alone, reads the
    decision it handed off from this run's handoff file, and on "retrain" goes to the chain's
    first stage; the chain ends with the monitor after it, never back at the decision."""
    config = infra_config(environ=USECASE_ENVIRON)
    (rule,) = [
        r
        for r in _resources(templates["chain"], "AWS::Events::Rule")
        if "Input" in r["Properties"]["Targets"][0]
    ]
    assert rule["Properties"]["ScheduleExpression"] == config.chain.monitor_schedule
    assert json.loads(rule["Properties"]["Targets"][0]["Input"]) == {MODE_KEY: MONITOR_MODE}
    states = machine["States"]
    guard = states["Monitor only?"]["Choices"]
    (monitor_mode,) = [c for c in guard if "And" in c]
    assert {"Variable": f"$.{MODE_KEY}", "StringEquals": MONITOR_MODE} in monitor_mode["And"]
    assert monitor_mode["Next"] == SCHEDULED_MONITOR_STATE
    assert states[SCHEDULED_MONITOR_STATE]["Next"] == READ_DECISION_STATE
    read = states[READ_DECISION_STATE]
    assert read["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject"
    assert read["Parameters"]["Key.$"] == (
        f"States.Format('{jobs.handoff_key('{}')}', $$.Execution.Name)"
    )
    assert read["ResultSelector"] == {"handoff.$": "States.StringToJson($.Body)"}
    assert read["Next"] == RETRAIN_CHOICE
    (retrain,) = states[RETRAIN_CHOICE]["Choices"]
    assert retrain["Variable"] == f"$.monitor.handoff.{handoff.DECISION_KEY}"
    assert retrain["StringEquals"] == handoff.RETRAIN
    assert retrain["Next"] == AWS_CHAIN[0][0]
    kept = states[states[RETRAIN_CHOICE]["Default"]]
    assert states[kept["Next"]]["Type"] == "Succeed"
    # the chain's last stage leads to the monitor and then to Done, not to the decision
    assert states[AWS_CHAIN[-1][0]]["Next"] == AWS_MONITOR
    assert states[states[AWS_MONITOR]["Next"]]["Next"] == "Done"
    # the state machine may read the handoff file (and decrypt it)
    statements = _statements(templates["chain"], "ChainRole")
    by_action = {a: s for s in statements for a in _actions(s)}
    assert f"/{jobs.RUNS_PREFIX}*" in json.dumps(by_action["s3:GetObject"]["Resource"])
    assert "kms:Decrypt" in by_action


def test_alarms_on_drift_and_decay_notify_the_topic_which_cloudwatch_may_use(templates) -> None:
    """The alarms read what the monitor publishes, at the monitor's own bounds, and can
    deliver: a topic under SNS's AWS-managed key, or without a policy letting CloudWatch
    publish, would take the alarm and never send it."""
    bounds = monitoring_alarms(environ=USECASE_ENVIRON)
    chain = templates["chain"]
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in _resources(chain, "AWS::CloudWatch::Alarm")
    }
    assert set(alarms) == {cloudwatch.DRIFTED_SHARE, cloudwatch.CHAMPION_LIVE_METRIC}
    drift, decay = alarms[cloudwatch.DRIFTED_SHARE], alarms[cloudwatch.CHAMPION_LIVE_METRIC]
    assert drift["Threshold"] == bounds.max_drifted_share
    assert drift["ComparisonOperator"] == "GreaterThanThreshold"
    assert decay["Threshold"] == bounds.min_live_metric
    assert decay["ComparisonOperator"] == "LessThanThreshold"
    (topic_name,) = [
        name for name, r in chain["Resources"].items() if r["Type"] == "AWS::SNS::Topic"
    ]
    for alarm in (drift, decay):
        assert alarm["Namespace"] == bounds.namespace
        assert alarm["Dimensions"] == [
            {"Name": cloudwatch.USECASE_DIMENSION, "Value": bounds.usecase}
        ]
        assert alarm["AlarmActions"] == [{"Ref": topic_name}]
        assert alarm["TreatMissingData"] == "notBreaching"
    topic = chain["Resources"][topic_name]["Properties"]
    key_ref = topic["KmsMasterKeyId"]
    assert "alias/aws/sns" not in json.dumps(key_ref)
    (key_name,) = key_ref["Fn::GetAtt"][:1]
    key_policy = chain["Resources"][key_name]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(_actions(s))
        for s in key_policy
    )
    (policy,) = _resources(chain, "AWS::SNS::TopicPolicy")
    assert any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and "sns:Publish" in _actions(s)
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_the_jobs_may_publish_the_monitor_s_figures_to_its_namespace_only(templates) -> None:
    statements = _statements(templates["spark"], "JobRole")
    (put,) = [s for s in statements if "cloudwatch:PutMetricData" in _actions(s)]
    assert put["Condition"] == {
        "StringEquals": {
            "cloudwatch:namespace": monitoring_alarms(environ=USECASE_ENVIRON).namespace
        }
    }


def _statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    statements = []
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy" and name.startswith(role_prefix):
            statements += _render(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_the_state_machine_may_run_emr_jobs_and_pass_only_the_job_role(templates) -> None:
    statements = _statements(templates["chain"], "ChainRole")
    by_action = {a: s for s in statements for a in _actions(s)}
    assert "emr-serverless:StartJobRun" in by_action
    assert by_action["emr-serverless:GetJobRun"]["Resource"].endswith("/jobruns/*")
    pass_role = by_action["iam:PassRole"]
    assert "JobRole" in json.dumps(pass_role["Resource"])
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }
    assert by_action["events:PutRule"]["Resource"].endswith(f":rule/{EMR_SYNC_RULE}")
    assert "codebuild:StartBuild" in by_action and "sns:Publish" in by_action
    assert not [s for s in statements if "*" in _actions(s)]


def test_the_release_build_packages_in_the_vpc_with_docker_and_secrets_by_reference(
    templates,
) -> None:
    (project,) = _resources(templates["chain"], "AWS::CodeBuild::Project")
    properties = _render(project["Properties"])
    environment = properties["Environment"]
    assert environment["PrivilegedMode"] is True  # Docker: bentoml containerize
    assert properties["VpcConfig"]["Subnets"]
    variables = {v["Name"]: v for v in environment["EnvironmentVariables"]}
    for secret in ("MLFLOW_TRACKING_PASSWORD", "MLOPS_REDIS_AUTH_TOKEN"):
        assert variables[secret]["Type"] == "SECRETS_MANAGER", secret
    assert not [n for n in variables if n.endswith(jobs.SECRET_ARN_SUFFIX)]
    assert variables["MLOPS_ENV"]["Value"] == "aws"
    # the serving stack's own deploy role, not the CDK bootstrap's (administrator) one
    role_value = json.dumps(variables[CLOUDFORMATION_ROLE_VARIABLE]["Value"])
    assert "DeployRole" in role_value and "cfn-exec-role" not in role_value
    buildspec = properties["Source"]["BuildSpec"]
    assert "python -m infra.deploy release" in buildspec
    assert f'--handoff-file \\"${HANDOFF_VARIABLE}\\"' in buildspec
    assert f"/{jobs.CODE_PREFIX}{jobs.SOURCE_BUNDLE} source.zip" in buildspec
    # every file it installs checked against the lock's hashes; nothing resolved at build time
    assert f"pip install --quiet --require-hashes --no-deps -r {jobs.RUNTIME_LOCK}" in buildspec
    assert "constraints.txt" not in buildspec and "-e ." not in buildspec
    # it rolls the serving stack through the serving stack's deploy role, not with rights of its
    # own, and passes no other role
    statements = _statements(templates["chain"], "ReleaseRole")
    by_action = {a: s for s in statements for a in _actions(s)}
    passed = json.dumps(by_action["iam:PassRole"]["Resource"])
    assert "DeployRole" in passed and "cfn-exec-role" not in passed
    assert f"{STACK}-serving/*" in json.dumps(by_action["cloudformation:UpdateStack"])
    assert not [a for s in statements for a in _actions(s) if a.startswith("ecs:Update")]
    # CodeBuild reads the two secrets it gives the build, and no other: the online store's
    # read-only user's token and the release account's MLflow password (not the Redis writer's,
    # not the jobs', not the admin's)
    readable = json.dumps(by_action["secretsmanager:GetSecretValue"]["Resource"])
    assert "RedisReaderToken" in readable and "ReleasePassword" in readable
    assert readable.count("import") == 2
    assert variables["MLFLOW_TRACKING_USERNAME"]["Value"] == jobs.MLFLOW_RELEASE_USER
    assert variables["MLOPS_REDIS_USER"]["Value"] == REDIS_READER[0]


def test_a_retrain_on_aws_splits_and_trains_as_the_use_case_says(machine) -> None:
    """The fit job is given nothing but its stage and the aws profile: no override travels in
    its arguments or its environment, so what AWS retrains on (the split, rolling or fixed,
    the model) is what the use case's config says, as locally."""
    from configs import load_settings

    fit = machine["States"]["fit"]["Parameters"]["JobDriver"]["SparkSubmit"]
    arguments = fit["EntryPointArguments.$"]
    assert "split" not in arguments and "training" not in arguments
    assert "MLOPS_OVERRIDES" not in fit["SparkSubmitParameters"]
    # the job's environment as the stack gives it (its values do not matter here)
    variables = set(re.findall(r"driverEnv\.([A-Z_]+)=", fit["SparkSubmitParameters"]))
    environ = {
        **{name: "set-by-the-stack" for name in variables},
        **{name: "set-by-the-image" for name in ("BENTOML_HOME", "SPARK_MASTER")},
        "MLOPS_REDIS_AUTH_TOKEN": "read-from-its-secret",
        **USECASE_ENVIRON,
    }
    aws = load_settings("aws", environ=environ).training
    assert aws == load_settings("local", environ=USECASE_ENVIRON).training
