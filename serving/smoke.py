"""A smoke request against a running service: `python -m serving.smoke <base url>`.

The release runs it after rolling the service to a new image: wait (bounded) until `/readyz`
says the service can answer well, then send the use case's example request to `/predict` and
check that every item got a score. Exit 0 when it did; 1, with what went wrong, when not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from configs import load_settings
from serving.guard import api_keys
from usecases import load as load_usecase


class SmokeFailed(RuntimeError):
    """The service did not answer the smoke request well."""


def example_request(usecase_name: str) -> tuple[dict[str, Any], str, str]:
    """(the request body, its items' field, the score field) of the use case's example."""
    usecase = load_usecase(usecase_name)
    request = usecase.request
    if not request.example:
        raise SmokeFailed(f"use case {usecase_name!r} declares no example request")
    body = {request.items_field: [dict(request.example)]}
    return body, request.items_field, usecase.outcome.score_field


def _call(
    url: str, body: dict[str, Any] | None, timeout_s: float, api_key: str = ""
) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        return 0, str(err)


def smoke(
    base_url: str,
    body: dict[str, Any],
    score_field: str,
    *,
    ready_within_s: float = 300,
    poll_s: float = 5,
    timeout_s: float = 10,
    api_key: str = "",
    task: str = "binary",
) -> dict[str, Any]:
    """Wait for `/readyz`, POST `body` to `/predict` (with `api_key` when the service asks for
    one); the answer, or SmokeFailed. Each item's `score_field` must hold what the `task`
    answers: a probability (binary), a probability per class summing to 1 (multiclass), a
    finite number (regression)."""
    base = base_url.rstrip("/")
    deadline = time.monotonic() + ready_within_s
    while True:
        code, text = _call(f"{base}/readyz", None, timeout_s)
        if code == 200:
            break
        if time.monotonic() >= deadline:
            raise SmokeFailed(
                f"{base}/readyz did not answer 200 within {ready_within_s:.0f}s "
                f"(last: {code or 'no answer'} {text[:200]})"
            )
        time.sleep(poll_s)
    code, text = _call(f"{base}/predict", body, timeout_s, api_key)
    if code != 200:
        raise SmokeFailed(f"{base}/predict answered {code}: {text[:500]}")
    try:
        answer = json.loads(text)
        predictions = answer["predictions"]
        scores = [p[score_field] for p in predictions]
    except (ValueError, KeyError, TypeError) as err:
        raise SmokeFailed(
            f"{base}/predict answered 200 without scores ({err}): {text[:500]}"
        ) from None
    expected = len(next(iter(body.values())))
    if len(scores) != expected or not all(_answers(task, score) for score in scores):
        raise SmokeFailed(f"{base}/predict answered {scores} for {expected} item(s)")
    return dict(answer)


def _answers(task: str, score: Any) -> bool:
    """Whether `score` is a well-formed answer of `task` (see `smoke`)."""
    if task == "multiclass":
        return (
            isinstance(score, dict)
            and all(isinstance(p, int | float) and 0.0 <= p <= 1.0 for p in score.values())
            and math.isclose(sum(score.values()), 1.0, abs_tol=1e-6)
        )
    if not isinstance(score, int | float) or isinstance(score, bool):
        return False
    return math.isfinite(score) and (task != "binary" or 0.0 <= score <= 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.smoke", description=__doc__)
    parser.add_argument("url", help="the service's base URL, e.g. https://serving.example.com")
    parser.add_argument("--env", default=None, help="config profile (names the use case)")
    parser.add_argument("--ready-within", type=float, default=300, help="seconds to wait")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    try:
        body, _, score_field = example_request(settings.usecase)
        task = load_usecase(settings.usecase).target.kind
        # the service's first API key, when it has any (an endpoint opened to the internet)
        keys = api_keys()
        answer = smoke(
            args.url,
            body,
            score_field,
            ready_within_s=args.ready_within,
            api_key=keys[0] if keys else "",
            task=task,
        )
    except SmokeFailed as err:
        print(f"smoke request failed: {err}", file=sys.stderr)
        return 1
    print(f"smoke request answered by model version {answer.get('model_version', '?')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
