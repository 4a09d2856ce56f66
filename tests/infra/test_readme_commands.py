"""Every AWS command the README gives is run here, as far as this machine can take it: with no
AWS credentials, each must get past its argument parsing and stop at the credentials check,
saying what is missing (not "invalid choice"). `make <target> ENV=aws` is followed to the
`python -m infra.deploy` command it runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEPLOY = re.compile(r"python -m infra\.deploy ([^`\n#]*)")
MAKE_AWS = re.compile(r"make (\w+) ENV=(?:aws|staging|prod)")


def _readme_deploy_commands() -> list[list[str]]:
    commands = {tuple(shlex.split(m.group(1).strip())) for m in DEPLOY.finditer(README)}
    # the module's own usage lines are documentation too
    return [list(c) for c in sorted(commands) if c and not c[0].startswith("<")]


def _make_deploy_commands() -> list[list[str]]:
    commands = []
    for target in sorted(set(MAKE_AWS.findall(README))):
        dry = subprocess.run(
            ["make", "-n", target, "ENV=aws"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        ran = [m.group(1) for m in DEPLOY.finditer(dry)]
        assert ran, f"make {target} ENV=aws runs no infra.deploy command:\n{dry}"
        # the last is the command itself (deploy runs preflight first)
        commands.append(shlex.split(ran[-1].replace("$(", "").strip()))
    return commands


def _without_credentials(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REGION="eu-west-1",
    )
    return env


def test_the_readme_names_the_aws_commands() -> None:
    named = {c[0] for c in _readme_deploy_commands()}
    assert {"mlflow-ui", "spark"} <= named
    made = set(MAKE_AWS.findall(README))
    assert {"deploy", "status", "rollback", "releases", "promote", "wait", "destroy"} <= made


@pytest.mark.parametrize(
    "command",
    [*_readme_deploy_commands(), *_make_deploy_commands()],
    ids=lambda c: " ".join(c).replace(str(ROOT), "<root>"),
)
def test_each_readme_aws_command_parses_and_asks_for_credentials(command, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "infra.deploy", *command],
        cwd=ROOT,
        env=_without_credentials(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "invalid choice" not in done.stderr and "usage:" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "no AWS credentials found" in done.stderr, done.stderr
