"""Start `python -m serving` for real and wait for it to be ready: shared by the HTTP tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from configs import load_settings
from tests.conftest import PLATFORM_USECASE
from usecases import load

ROOT = Path(__file__).resolve().parents[1]
# The platform's use case, as a client of its service sees it: the items' field, the example
# request (a day its committed data covers), the answer's fields, the metrics' prefix.
PLATFORM = load(PLATFORM_USECASE)
ITEMS = PLATFORM.request.items_field
EXAMPLE = dict(PLATFORM.request.example)
SCORE, DECISION = PLATFORM.outcome.score_field, PLATFORM.outcome.decision_field
NAMES = load_settings("local", environ={}, usecase=PLATFORM_USECASE).names


def body(*items: dict[str, Any]) -> dict[str, Any]:
    """A /predict body of `items`."""
    return {ITEMS: list(items)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(
    root: Path,
    overrides: dict[str, Any],
    env_name: str = "local",
    usecase: str = PLATFORM_USECASE,
    environ: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`python -m serving` of `usecase` with `overrides` over the `env_name` profile (and
    `environ` over this process's environment), once `/readyz` is 200."""
    port = free_port()
    env = {
        **os.environ,
        "MLOPS_USECASE": usecase,
        "MLOPS_ENV": env_name,
        "MLOPS_OVERRIDES": json.dumps(overrides),
        "PYTHONUNBUFFERED": "1",
        **(environ or {}),
    }
    log_path = root / f"serve-{port}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, log_path)
            yield url, process, log_path
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def wait_until_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(1)
    process.kill()
    pytest.fail(f"not ready after 180 s:\n{log_path.read_text()[-3000:]}")
