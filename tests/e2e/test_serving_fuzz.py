"""The service under fuzzing: no client mistake gets a 5xx.

Three sources of bad requests, all sent over HTTP to the served champion:
- schemathesis, from the service's own OpenAPI document: bodies that fit the schema
  (positive) and bodies that break it (negative), for `/predict` and `/predict_batch`;
- hypothesis: arbitrary bytes and arbitrary JSON documents as bodies;
- a table of the mistakes named in RELIABILITY.md (wrong content types, pickles, NaN and
  infinities, huge strings, too many items, oversized and chunked bodies, ...).

Generation is derandomized: every run sends the same requests.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error

from tests.serving_helpers import EXAMPLE, ITEMS, body

APIS = ("/predict", "/predict_batch")
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def api_schema(server: str) -> Any:
    document = requests.get(f"{server}/docs.json", timeout=10).json()
    # BentoML labels its document OpenAPI 3.0.2 but writes pydantic's JSON Schema 2020-12
    # (`{"type": "null"}` in anyOf, numeric exclusiveMinimum): read it as the 3.1 it is.
    assert document["openapi"].startswith("3.0")
    document["openapi"] = "3.1.0"
    return schemathesis.openapi.from_dict(document)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("path", APIS)
def test_schema_driven_requests_never_get_a_server_error(
    server: str, api_schema: Any, path: str, mode: GenerationMode
) -> None:
    statuses: Counter[int] = Counter()

    @given(case=api_schema[path]["POST"].as_strategy(generation_mode=mode))
    @FUZZ
    def send(case: Any) -> None:
        response = case.call(base_url=server, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])

    send()
    assert sum(statuses.values()) >= 50, statuses
    assert all(status < 500 for status in statuses), statuses
    if mode == GenerationMode.NEGATIVE:
        assert set(statuses) <= {400, 413, 415, 422}, statuses
    else:  # some generated items are valid all through: the model answered them
        assert statuses[200] > 0, statuses


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("path", APIS)
def test_arbitrary_bodies_get_a_4xx(server: str, path: str) -> None:
    statuses: Counter[int] = Counter()

    @given(body=st.binary(max_size=2_000) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
    @FUZZ
    def send(body: bytes) -> None:
        response = requests.post(
            f"{server}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        statuses[response.status_code] += 1
        assert 400 <= response.status_code < 500, (body[:200], response.status_code)

    send()
    assert sum(statuses.values()) >= 50, statuses


class RunsACommand:
    """A pickle that, if ever unpickled, creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def good_body(**changes: Any) -> str:
    return json.dumps(body({**EXAMPLE, **changes}))


def with_token(token: str) -> str:
    """A body whose meter id is the bare JSON-ish `token` (NaN, Infinity, 1e999): not a
    value any request field takes, and not standard JSON."""
    return good_body(meter_id="TOKEN").replace('"TOKEN"', token)


def oversized_chunks() -> Iterator[bytes]:
    """A valid-looking body sent chunked (no Content-Length), 2 MiB in all."""
    opening = f'{{"{ITEMS}": ['
    assert good_body().startswith(opening)
    yield (opening + good_body()[len(opening) : -2]).encode()
    for _ in range(2048):
        yield b"," + b" " * 1023
    yield b"]}"


# (name, body, content type, the statuses allowed)
MISTAKES: list[tuple[str, Any, str | None, set[int]]] = [
    ("not json", b"not json", "application/json", {400}),
    ("empty body", b"", "application/json", {400}),
    ("text/plain", good_body(), "text/plain", {415}),
    ("no content type", good_body(), None, {415}),
    ("form", f"{ITEMS}=1", "application/x-www-form-urlencoded", {415}),
    ("multipart", good_body(), "multipart/form-data; boundary=x", {415}),
    ("xml", f"<{ITEMS}/>", "application/xml", {415}),
    (
        "bentoml pickle",
        pickle.dumps(body(EXAMPLE)),
        "application/vnd.bentoml+pickle",
        {415},
    ),
    ("octet-stream pickle", pickle.dumps(body(EXAMPLE)), "application/octet-stream", {415}),
    ("NaN", with_token("NaN"), "application/json", {400}),
    ("Infinity", with_token("Infinity"), "application/json", {400}),
    ("-Infinity", with_token("-Infinity"), "application/json", {400}),
    ("1e999", with_token("1e999"), "application/json", {400}),
    ("huge id (5 MB)", good_body(meter_id="M" * 5_000_000), "application/json", {413}),
    ("huge id (500 kB)", good_body(facility_id="S" * 500_000), "application/json", {400}),
    ("oversized chunked body", oversized_chunks, "application/json", {413}),
    ("too many items", json.dumps(body(*[EXAMPLE] * 1001)), "application/json", {400}),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "application/json", {400}),
    ("NUL in an id", good_body(meter_id="S1\x00"), "application/json", {400}),
    ("UTF-16 body", good_body().encode("utf-16"), "application/json", {400}),
    ("year 0001", good_body(reading_at="0001-01-01T00:00:00Z"), "application/json", {400}),
    ("year 9999", good_body(reading_at="9999-12-31T23:59:59Z"), "application/json", {400}),
    ("no UTC offset", good_body(reading_at="2024-03-10T08:00:00"), "application/json", {400}),
    ("JSON with charset", good_body(), "application/json; charset=utf-8", {200}),
]


@pytest.mark.parametrize(
    ("name", "sent", "content_type", "allowed"), MISTAKES, ids=[m[0] for m in MISTAKES]
)
@pytest.mark.parametrize("path", APIS)
def test_each_named_mistake_gets_its_4xx(
    server: str, path: str, name: str, sent: Any, content_type: str | None, allowed: set[int]
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    data = sent() if callable(sent) else sent
    response = requests.post(f"{server}{path}", data=data, headers=headers, timeout=60)
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()  # a JSON error body, not a stack trace


def test_a_pickle_is_never_unpickled(server: str, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(RunsACommand(marker))
    for path in APIS:
        for content_type in (
            "application/vnd.bentoml+pickle",
            "application/octet-stream",
            "application/python-pickle",
            "application/json",
        ):
            response = requests.post(
                f"{server}{path}", data=payload, headers={"Content-Type": content_type}, timeout=30
            )
            assert 400 <= response.status_code < 500, (content_type, response.status_code)
    assert not marker.exists()
    assert requests.post(f"{server}/predict", json=body(EXAMPLE), timeout=30).ok
