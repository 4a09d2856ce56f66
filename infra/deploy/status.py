"""`status`: the chain's last runs, and the step each failed one stopped at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from configs.settings import AwsConfig
from infra.deploy.common import DeployError
from infra.deploy.first_deploy import state_machine_arn


# -- status and teardown -------------------------------------------------------------------
@dataclass(frozen=True)
class ChainRun:
    name: str
    status: str
    started: str
    stopped: str
    # The step a failed run stopped at (a stage of the chain), else "".
    failed_at: str = ""


def status(session: Any, config: AwsConfig, limit: int = 10) -> list[ChainRun]:
    """The chain's last runs, newest first, with the stage each failed one stopped at."""
    stepfunctions = session.client("stepfunctions")
    machine = state_machine_arn(session.client("cloudformation"), config)
    runs = []
    for execution in stepfunctions.list_executions(stateMachineArn=machine, maxResults=limit)[
        "executions"
    ]:
        failed_at = ""
        if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED"):
            failed_at = _failed_step(stepfunctions, execution["executionArn"])
        runs.append(
            ChainRun(
                execution["name"],
                execution["status"],
                _iso(execution.get("startDate")),
                _iso(execution.get("stopDate")),
                failed_at,
            )
        )
    return runs


def wait_for_run(
    session: Any, config: AwsConfig, *, poll_s: float = 30, sleep: Any = None
) -> ChainRun:
    """Wait for the chain's newest run to end (the one a deploy just started) and return it;
    the pipeline's staging job fails unless it SUCCEEDED (its release step smoked the service)."""
    import time

    sleep = sleep or time.sleep
    while True:
        runs = status(session, config, limit=1)
        if not runs:
            raise DeployError("the chain has no run to wait for: did the deploy start one?")
        if runs[0].status != "RUNNING":
            return runs[0]
        sleep(poll_s)


def _failed_step(stepfunctions: Any, execution: str) -> str:
    """The last step a run entered before it failed (not its own notify and fail steps)."""
    events = stepfunctions.get_execution_history(
        executionArn=execution, reverseOrder=True, maxResults=100
    )["events"]
    for event in events:
        entered = event.get("stateEnteredEventDetails", {}).get("name", "")
        if entered and not entered.startswith("Notify ") and entered != "Failed":
            return str(entered)
    return "?"


def _iso(value: Any) -> str:
    return value.replace(microsecond=0).isoformat() if value else ""
