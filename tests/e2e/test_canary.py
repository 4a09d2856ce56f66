"""The canary decision run against two real service processes of the trained platform behind
a weighted router (`serving.canary.Router`, standing in for the load balancer's weighted
target groups): the canary, given each fault in turn (errors, slowness, shifted scores, by
tests/canary_faults: a stand-in for a broken release), is rolled back naming the fault, and a
healthy canary is promoted. Both processes serve the same Bento from this checkout; only the
injected fault tells them apart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from bench.serving_latency import request_items
from configs import cloudwatch
from configs.settings import CanaryConfig
from serving.canary import CANARY, PROMOTE, ROLLBACK, STABLE, Router, judge
from tests.conftest import platform_overrides, platform_settings
from tests.serving_helpers import ITEMS, PLATFORM, SCORE, free_port, serving

FAULTS = Path(__file__).resolve().parents[1] / "canary_faults"
# The rules of the platform's defaults, judged after fewer requests (a test's traffic), with
# room for this machine's pauses in a p99 of about a hundred answers.
RULES = CanaryConfig(min_requests=80, p99_slack_ms=60.0)
SHARE = 30.0  # percent of the requests the canary takes
REQUESTS = 400


@pytest.fixture(scope="module")
def releases(platform_trained_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """(the router, the file naming the canary's fault, the request bodies)."""
    # the monitoring tests read the shared platform's prediction log: these two write none
    # and each publishes its figures as the AWS alarms read them, every second
    overrides = platform_overrides(platform_trained_root) | {
        "monitoring": {"prediction_log": {"enabled": False}},
        "serving": {"canary": {"publish_figures": True, "publish_interval_s": 1.0}},
    }
    fault = tmp_path_factory.mktemp("canary") / "fault"
    fault.write_text("none")
    canary_environ = {
        "PYTHONPATH": str(FAULTS),
        "MLOPS_TEST_FAULT_FILE": str(fault),
        cloudwatch.RELEASE_VARIABLE: CANARY,
    }
    items = request_items(platform_settings(platform_trained_root), PLATFORM)
    bodies = [json.dumps({ITEMS: [item]}) for item in items]
    with (
        serving(
            platform_trained_root, overrides, environ={cloudwatch.RELEASE_VARIABLE: STABLE}
        ) as (stable, _, _),
        serving(platform_trained_root, overrides, environ=canary_environ) as (canary, _, log),
    ):
        router = Router(stable, canary, SHARE, SCORE, seed=7)
        with router.serving(free_port()) as url:
            yield router, url, fault, bodies, log


@pytest.mark.parametrize(
    ("fault", "action", "named"),
    [
        ("errors", ROLLBACK, "errors:"),
        ("slow", ROLLBACK, "latency:"),
        ("shift", ROLLBACK, "scores:"),
        ("none", PROMOTE, "over"),
    ],
)
def test_the_canary_is_rolled_back_on_each_fault_and_promoted_when_healthy(
    releases, fault: str, action: str, named: str
) -> None:
    router, url, fault_file, bodies, log = releases
    published_before = len(_published(log))
    fault_file.write_text(fault)
    router.reset()
    with requests.Session() as client:
        for i in range(REQUESTS):
            client.post(
                f"{url}/predict",
                data=bodies[i % len(bodies)],
                headers={"content-type": "application/json"},
                timeout=30,
            )
    stable, canary = router.figures[STABLE], router.figures[CANARY]
    # the router split the traffic as weighted, and every answer was recorded
    assert stable.requests + canary.requests == REQUESTS
    assert 0.2 < canary.requests / REQUESTS < 0.4
    verdict = judge(stable, canary, RULES)
    assert verdict.action == action, verdict
    assert [r for r in verdict.reasons if r.startswith(named)], verdict
    if action == ROLLBACK:
        # one fault, one broken rule: the others held
        assert len(verdict.reasons) == 1, verdict
    # what the canary's worker published for the alarms: its release's requests and 5xx
    time.sleep(1.5)  # the next request after the interval writes the line: one more
    requests.post(
        f"{router.upstreams[CANARY]}/predict",
        data=bodies[0],
        headers={"content-type": "application/json"},
        timeout=30,
    )
    published = _published(log)[published_before:]
    assert published and {p[cloudwatch.RELEASE_DIMENSION] for p in published} == {CANARY}
    errors = sum(p[cloudwatch.RELEASE_ERRORS] for p in published)
    assert (errors > 0) is (fault == "errors"), errors
    assert sum(p[cloudwatch.RELEASE_REQUESTS] for p in published) >= canary.requests


def _published(log: Path) -> list[dict]:
    """The embedded-metric lines in a service's output (each a JSON object alone on its line,
    as CloudWatch Logs takes an embedded-metric record)."""
    lines = [line for line in log.read_text().splitlines() if '"_aws"' in line]
    assert all(line.startswith("{") for line in lines), lines[:3]
    return [json.loads(line) for line in lines]
