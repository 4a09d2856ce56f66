"""The infra tier: runs in .venv-infra (AWS CDK, moto, cfn-lint), fully offline.

One synthesis of the app per test run, from the shipped `configs/aws.yaml` and the platform's
own use case (whatever the shell says: `make` exports its default use case), for a fixed test
region; AWS calls go to moto with fake credentials, never to AWS.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configs import load_settings
from configs.settings import USECASE_VARIABLE
from infra.config import infra_config
from tests.conftest import PLATFORM_USECASE

REGION = "eu-west-1"  # any region: the stacks take theirs from the deploying credentials
os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
# What the scripts under test read from the environment, and what the tests pass as `environ`.
os.environ[USECASE_VARIABLE] = PLATFORM_USECASE
# The repository the delivery stack's deploy role trusts (a name no one owns: example.invalid's).
GITHUB_REPOSITORY = "example-org/mlops-platform"
os.environ["MLOPS_GITHUB_REPOSITORY"] = GITHUB_REPOSITORY
USECASE_ENVIRON = {USECASE_VARIABLE: PLATFORM_USECASE, "MLOPS_GITHUB_REPOSITORY": GITHUB_REPOSITORY}
# The prefix of every stack and named resource, and the Bento the service is built as.
STACK = infra_config(environ=USECASE_ENVIRON).name
BENTO = load_settings("local", environ=USECASE_ENVIRON).names.bento


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """(the stacks by concern, the cloud assembly folder) of one synthesis."""
    from infra.app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stacks = build_app(infra_config(environ=USECASE_ENVIRON), REGION, outdir=str(outdir))
    app.synth()
    return stacks, outdir


@pytest.fixture(scope="session")
def templates(synthesized: tuple[dict[str, Any], Path]) -> dict[str, dict[str, Any]]:
    stacks, outdir = synthesized
    return {
        concern: json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
        for concern, stack in stacks.items()
    }


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A boto3 session on moto (in process), with fake credentials."""
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def moto_server(tmp_path, monkeypatch) -> Iterator[str]:
    """A moto server recording every request to a file; this process's boto3 calls go to it."""
    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    recorder._location = str(tmp_path / "recording.jsonl")  # moto's own default is the cwd
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield endpoint
    finally:
        recorder.stop_recording()
        server.stop()
