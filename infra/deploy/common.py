"""What every command shares: running tools, checking credentials and tools, reading stacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


CDK_CLI = ["npx", "--yes", "aws-cdk@2"]


JOB_POLL_S = 15


class DeployError(RuntimeError):
    """Deploying cannot go on; the message says what is missing or what failed."""


Run = Callable[..., str]  # run(command, input_text=None) -> stdout


def run_command(command: Sequence[str], input_text: str | None = None) -> str:
    """Run a command, echoing it and streaming what it prints as it comes (a `cdk deploy` or a
    Docker build takes many minutes); raise DeployError with the end of its output when it
    fails. Returns what it printed."""
    print("+", " ".join(command), file=sys.stderr, flush=True)
    lines: list[str] = []
    with subprocess.Popen(
        list(command),
        cwd=ROOT,
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        if input_text is not None:
            assert process.stdin is not None
            process.stdin.write(input_text)
            process.stdin.close()
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", file=sys.stderr, flush=True)
            lines.append(line)
    output = "".join(lines)
    if process.returncode != 0:
        raise DeployError(f"{command[0]} failed ({process.returncode}):\n{output[-3000:]}")
    return output


# -- preflight ----------------------------------------------------------------------------
def check_credentials(session: Any) -> str:
    """The caller's identity, or a DeployError saying how to provide credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if session.get_credentials() is None:
        raise DeployError(
            "no AWS credentials found: set AWS_PROFILE (after `aws sso login` or `aws configure`) "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again"
        )
    if not session.region_name:
        raise DeployError("no AWS region: set AWS_REGION (e.g. AWS_REGION=eu-west-1)")
    try:
        identity = session.client("sts").get_caller_identity()
    except NoCredentialsError as err:
        raise DeployError(f"no usable AWS credentials: {err}") from None
    except (ClientError, BotoCoreError) as err:
        raise DeployError(f"the AWS credentials were refused: {err}") from None
    return str(identity["Arn"])


def check_tools(which: Callable[[str], str | None] = shutil.which) -> None:
    missing = []
    if which("docker") is None:
        missing.append(
            "Docker (to build and push the serving image): https://docs.docker.com/get-docker/"
        )
    if which("npx") is None:
        missing.append("Node.js with npx (runs the AWS CDK CLI, aws-cdk@2): https://nodejs.org/")
    if missing:
        raise DeployError("missing: " + "; ".join(missing))


def check_docker_daemon(run: Run) -> None:
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"])
    except DeployError:
        raise DeployError(
            "Docker is installed but its daemon does not answer: start Docker, then run again"
        ) from None


# -- stack outputs and releases ------------------------------------------------------------
def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def failing_events(cloudformation: Any, stacks: Sequence[str], limit: int = 10) -> str:
    """The newest failed resource events of `stacks` (what a failed `cdk deploy` hides in the
    console), one line each; "none recorded" when there are none or no stack exists yet."""
    lines = []
    for stack in stacks:
        try:
            events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        except Exception:
            continue
        failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        for event in failed[:limit]:
            lines.append(
                f"  {stack} {event.get('LogicalResourceId')} {event['ResourceStatus']}: "
                f"{event.get('ResourceStatusReason', '')}"
            )
    return "\n".join(lines) or "  none recorded"
