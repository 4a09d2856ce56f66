"""An endpoint opened to the internet answers only requests carrying one of its API keys, and
the release's smoke request sends one: both over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from serving import smoke
from serving.guard import API_KEYS_VARIABLE, ApiKeys, api_keys

PATHS = frozenset({"/predict", "/predict_batch"})
KEYS = ["old-key-still-accepted", "new-key"]
NEARLY = KEYS[1][:-1] + "x"  # one character off the new key


async def service(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for the prediction service behind the middleware: a score for each item."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = {"status": "ready"}
    if scope["path"] == "/predict":
        items = json.loads(body)["items"]
        answer = {"predictions": [{"score": 0.25} for _ in items], "model_version": "3"}
    payload = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def served() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(ApiKeys(service, PATHS, KEYS), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


BODY = {"items": [{"key": "a"}]}


def test_a_request_without_an_accepted_key_is_refused(served: str) -> None:
    code, text = smoke._call(f"{served}/predict", BODY, 5)
    assert code == 401 and "API key" in json.loads(text)["error"]
    assert smoke._call(f"{served}/predict", BODY, 5, api_key=NEARLY)[0] == 401
    assert smoke._call(f"{served}/predict_batch", BODY, 5, api_key="")[0] == 401
    # the health checks need none (the load balancer sends no key)
    assert smoke._call(f"{served}/readyz", None, 5)[0] == 200


def test_either_key_is_accepted_while_one_replaces_the_other(served: str) -> None:
    for key in KEYS:
        code, _ = smoke._call(f"{served}/predict", BODY, 5, api_key=key)
        assert code == 200, key


def test_the_smoke_request_sends_the_service_s_first_key(served: str, monkeypatch) -> None:
    monkeypatch.setenv(API_KEYS_VARIABLE, ", ".join(KEYS))
    (first, _) = api_keys()
    answer = smoke.smoke(served, BODY, "score", ready_within_s=5, poll_s=0.05, api_key=first)
    assert answer["model_version"] == "3"
    with pytest.raises(smoke.SmokeFailed, match="answered 401"):
        smoke.smoke(served, BODY, "score", ready_within_s=5, poll_s=0.05)


def test_with_no_keys_nothing_is_asked_for() -> None:
    assert api_keys({}) == [] and api_keys({API_KEYS_VARIABLE: " , "}) == []
    guard = ApiKeys(service, PATHS, [])
    assert guard.app is service and not guard.keys
    assert not ApiKeys(service, PATHS, KEYS).accepts(b"Basic new-key")
    assert ApiKeys(service, PATHS, KEYS).accepts(b"bearer new-key")
