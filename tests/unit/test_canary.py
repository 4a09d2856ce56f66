"""The canary decision (`serving.canary.judge`) on figures made to break one rule each."""

from __future__ import annotations

import numpy as np
import pytest

from configs.settings import CanaryConfig
from serving.canary import PROMOTE, ROLLBACK, WAIT, Figures, judge, score_of

RULES = CanaryConfig(min_requests=200)


def figures(
    n: int = 400, errors: int = 0, latency_ms: float = 10.0, shift: float = 0.0, seed: int = 0
) -> Figures:
    draw = np.random.default_rng(seed)
    made = Figures()
    for i in range(n):
        scores = list(np.clip(draw.beta(2, 5, size=3) + shift, 0, 1))
        made.add(500 if i < errors else 200, latency_ms + draw.exponential(2.0), scores)
    return made


def test_a_healthy_canary_is_promoted() -> None:
    verdict = judge(figures(seed=1), figures(seed=2), RULES)
    assert verdict.action == PROMOTE, verdict


def test_too_few_requests_wait() -> None:
    assert judge(figures(), figures(n=199), RULES).action == WAIT


@pytest.mark.parametrize(
    ("fault", "canary", "named"),
    [
        ("errors", figures(errors=12, seed=2), "errors: 3.0% of the canary's answers were 5xx"),
        ("slowness", figures(latency_ms=60.0, seed=2), "latency: the canary's p99"),
        ("shifted scores", figures(shift=0.15, seed=2), "scores: a decile of the canary's scores"),
    ],
)
def test_each_fault_rolls_the_canary_back_and_is_named(
    fault: str, canary: Figures, named: str
) -> None:
    verdict = judge(figures(seed=1), canary, RULES)
    assert verdict.action == ROLLBACK, (fault, verdict)
    assert len(verdict.reasons) == 1 and verdict.reasons[0].startswith(named), verdict


def test_errors_the_stable_release_shares_are_not_the_canary_s_fault() -> None:
    assert judge(figures(errors=12, seed=1), figures(errors=12, seed=2), RULES).action == PROMOTE


def test_scores_read_from_each_kind_of_answer() -> None:
    assert score_of(0.25) == 0.25 and score_of(12) == 12.0
    assert score_of({"rain": 0.7, "sun": 0.3}) == 0.7
    assert score_of(True) is None and score_of(None) is None
