"""The chain's state machine executed, not only read: the definition moto's CloudFormation
created from the synthesized template, walked state by state by tests/infra/asl.py (Choice,
Catch, the run lock's conditional writes on moto's DynamoDB, the monitor's decision read from
moto's S3, failures published to moto's SNS).

Stand-ins, named: each EMR Serverless job is a handler that checks the job's entry point and
arguments as EMR would receive them (the stage, `--env aws`, this run's handoff file) and
writes what the stage hands off; the release build is a handler that checks the variables the
build is given. Each stage run for real on local Spark: test_chain_run.py.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from configs import handoff as handoff_keys
from configs.chain import AWS_CHAIN, AWS_MONITOR, RELEASE
from infra import deploy, jobs
from infra.config import infra_config
from infra.stacks.chain import HANDOFF_VARIABLE, LEFT_STATE, MODE_KEY, MONITOR_MODE
from tests.infra import policy_check
from tests.infra.asl import StateMachine, TaskFailed
from tests.infra.conftest import REGION, STACK, USECASE_ENVIRON
from tests.infra.test_deploy import create_stacks
from tests.infra.test_role_policies import _bucket_keys

STAGES = [stage for stage, _ in AWS_CHAIN]
EMR_JOB = "emr-serverless:startJobRun.sync"
BUILD = "codebuild:startBuild.sync"


class Jobs:
    """Stands in for the EMR Serverless jobs and the release build of every run."""

    def __init__(self, session: Any, lake: str) -> None:
        self.s3 = session.client("s3")
        self.lake = lake
        self.ran: list[tuple[str, str]] = []  # (run, stage)
        self.fail: set[str] = set()
        self.decision = handoff_keys.RETRAIN
        self.during: dict[str, Any] = {}  # stage -> called while it runs (once)

    def emr(self, parameters: dict[str, Any]) -> dict[str, Any]:
        driver = parameters["JobDriver"]["SparkSubmit"]
        arguments = driver["EntryPointArguments"]
        assert driver["EntryPoint"] == f"s3://{self.lake}/{jobs.CODE_PREFIX}{jobs.ENTRY_POINT}"
        assert arguments[:3] == ["--env", "aws", "--handoff-file"], arguments
        handoff_file, stage = arguments[3], arguments[4]
        assert len(arguments) == 5 and stage in {*STAGES, AWS_MONITOR}, arguments
        run = handoff_file.removeprefix(f"s3://{self.lake}/{jobs.RUNS_PREFIX}").split("/")[0]
        assert handoff_file == jobs.handoff_location(self.lake, run)
        self.ran.append((run, stage))
        if callback := self.during.pop(stage, None):
            callback()
        if stage in self.fail:
            raise TaskFailed("States.TaskFailed", f"the {stage} job ended FAILED")
        if stage == AWS_MONITOR:
            key = jobs.handoff_key(run)
            self.s3.put_object(
                Bucket=self.lake,
                Key=key,
                Body=json.dumps({handoff_keys.DECISION_KEY: self.decision}).encode(),
            )
        return {"JobRunId": f"{stage}-1", "State": "SUCCESS"}

    def build(self, parameters: dict[str, Any]) -> dict[str, Any]:
        variables = {v["Name"]: v["Value"] for v in parameters["EnvironmentVariablesOverride"]}
        run = variables["MLOPS_CHAIN_RUN"]
        assert variables[HANDOFF_VARIABLE] == jobs.handoff_location(self.lake, run)
        self.ran.append((run, next(s for s, where in AWS_CHAIN if where == RELEASE)))
        return {"Build": {"BuildStatus": "SUCCEEDED"}}

    def stages(self, run: str) -> list[str]:
        return [stage for name, stage in self.ran if name == run]


@pytest.fixture
def chain(aws, synthesized, templates) -> tuple[StateMachine, Jobs, Any]:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    cloudformation = aws.client("cloudformation")
    lake = deploy.stack_outputs(cloudformation, f"{STACK}-data")["LakeBucket"]
    runs = Jobs(aws, lake)
    recorder = policy_check.Recorder(REGION, bucket_keys=_bucket_keys(aws))
    machine = StateMachine(
        aws,
        deploy.state_machine_arn(cloudformation, config),
        {EMR_JOB: runs.emr, BUILD: runs.build},
        integration_session=recorder.attach(boto3.session.Session(region_name=REGION)),
    )
    machine.recorder = recorder  # type: ignore[attr-defined]
    (table,) = [
        t
        for t in aws.client("dynamodb").list_tables()["TableNames"]
        if t.startswith(f"{STACK}-chain-RunLock")
    ]
    return machine, runs, table


def _lock(aws: Any, table: str) -> list[dict[str, Any]]:
    return list(aws.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"])


def test_a_run_takes_the_lock_runs_every_stage_in_order_and_gives_the_lock_back(chain, aws) -> None:
    machine, runs, table = chain
    run = machine.start("run-1", {"started_by": "test"})
    assert run.status == "SUCCEEDED", (run.visited, run.error)
    assert runs.stages("run-1") == [*STAGES, AWS_MONITOR]
    assert run.visited[0] == "Take the run lock" and run.visited[-2:] == [
        "Give back the run lock",
        "Done",
    ]
    assert _lock(aws, table) == []


def test_a_failed_stage_stops_the_run_tells_the_topic_and_gives_the_lock_back(chain, aws) -> None:
    machine, runs, table = chain
    runs.fail = {"fit"}
    run = machine.start("run-1", {})
    assert run.status == "FAILED"
    assert runs.stages("run-1") == STAGES[: STAGES.index("fit") + 1]  # nothing after fit
    assert run.visited[-3:] == ["Notify fit failed", "Give back the run lock (failed)", "Failed"]
    assert _lock(aws, table) == []
    # and the next run can start
    runs.fail = set()
    assert machine.start("run-2", {}).status == "SUCCEEDED"


def test_of_two_runs_started_at_once_one_runs_and_the_other_ends_at_once(chain, aws) -> None:
    """The second starts while the first is in its first job (a drop of several files starts
    several runs): the conditional write refuses it, its holder is running, it leaves."""
    machine, runs, table = chain
    second = {}
    runs.during[STAGES[0]] = lambda: second.update(run=machine.start("run-2", {}))
    first = machine.start("run-1", {})

    assert first.status == "SUCCEEDED"
    assert second["run"].status == "SUCCEEDED" and second["run"].visited[-1] == LEFT_STATE
    assert "Another run in progress?" in second["run"].visited
    assert runs.stages("run-2") == []  # it ran nothing
    assert runs.stages("run-1") == [*STAGES, AWS_MONITOR]
    assert _lock(aws, table) == []


def test_a_lock_left_by_a_run_that_died_is_taken_over(chain, aws) -> None:
    """A run aborted or timed out never gives the lock back: the next run sees its holder is
    not running, takes the lock over and runs the chain."""
    machine, runs, table = chain
    stepfunctions = aws.client("stepfunctions")
    dead = stepfunctions.start_execution(stateMachineArn=machine.arn, name="dead")["executionArn"]
    stepfunctions.stop_execution(executionArn=dead)
    aws.client("dynamodb").put_item(
        TableName=table, Item={"lock_id": {"S": "chain"}, "held_by": {"S": dead}}
    )
    run = machine.start("run-1", {})
    assert run.status == "SUCCEEDED"
    assert "Take over a lock its run left" in run.visited
    assert runs.stages("run-1") == [*STAGES, AWS_MONITOR]
    assert _lock(aws, table) == []


@pytest.mark.parametrize(
    ("decision", "ends"),
    [(handoff_keys.RETRAIN, "Done"), ("keep", "Kept the champion")],
)
def test_the_scheduled_monitor_runs_the_chain_only_when_it_decides_to_retrain(
    chain, aws, decision, ends
) -> None:
    machine, runs, table = chain
    runs.decision = decision
    run = machine.start("monitor-1", {MODE_KEY: MONITOR_MODE})
    assert run.status == "SUCCEEDED" and run.visited[-1] == ends
    expected = [AWS_MONITOR, *STAGES, AWS_MONITOR] if ends == "Done" else [AWS_MONITOR]
    assert runs.stages("monitor-1") == expected
    assert _lock(aws, table) == []


def test_the_state_machine_s_role_may_make_every_call_its_states_make(
    chain, aws, templates
) -> None:
    """Every service call the states made in a run, a failed run, two runs at once, a
    take-over and a scheduled monitor, judged against the state machine role's policy."""
    machine, runs, table = chain
    runs.during[STAGES[0]] = lambda: machine.start("run-2", {})
    machine.start("run-1", {})
    runs.fail = {"fit"}
    machine.start("run-3", {})
    runs.fail = set()
    machine.start("monitor-1", {MODE_KEY: MONITOR_MODE})
    stepfunctions = aws.client("stepfunctions")
    dead = stepfunctions.start_execution(stateMachineArn=machine.arn, name="dead")["executionArn"]
    stepfunctions.stop_execution(executionArn=dead)
    aws.client("dynamodb").put_item(
        TableName=table, Item={"lock_id": {"S": "chain"}, "held_by": {"S": dead}}
    )
    machine.start("run-4", {})
    recorder = machine.recorder  # type: ignore[attr-defined]
    made = set(recorder.operations)
    assert {
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "states:DescribeExecution",
        "s3:GetObject",
        "sns:Publish",
    } <= made, made
    role = policy_check.role_logical_id(
        templates["chain"], "AWS::StepFunctions::StateMachine", "RoleArn"
    )
    policies = policy_check.role_policies(aws, f"{STACK}-chain", role)
    assert policy_check.refused(policies, recorder.calls) == []
