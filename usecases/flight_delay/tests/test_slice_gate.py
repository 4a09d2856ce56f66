"""The gate on the flight use case's slices: a candidate better on average but made worse
for one airline by construction is refused, and the decision names the airline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs import load_settings
from models.evaluation import BINARY_CLASSIFICATION as TASK
from pipelines.promote import gate
from usecases import load

USECASE = load("flight_delay")
RULES = load_settings("local", environ={}, usecase="flight_delay").promotion
CARRIERS = ["UA", "B6", "EV", "DL", "AA", "MQ"]
LABEL = USECASE.examples.label


def flights() -> tuple[pd.DataFrame, np.ndarray]:
    """6,000 test flights: carrier, origin, month and distance, a label, and how risky each
    flight really is (what a good model's score follows)."""
    rng = np.random.default_rng(7)
    rows = 6000
    risk = rng.normal(size=rows)
    chance = 1 / (1 + np.exp(-(2 * risk - 1.5)))
    frame = pd.DataFrame(
        {
            "carrier": rng.choice(CARRIERS, size=rows),
            "origin": rng.choice(["EWR", "JFK", "LGA"], size=rows),
            "sched_month": rng.choice([11.0, 12.0], size=rows),
            "distance": rng.choice([200.0, 760.0, 1400.0, 2500.0], size=rows),
            LABEL: (rng.random(rows) < chance).astype("int64"),
        }
    )
    return frame, risk


def scored(risk: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Probabilities that follow the risk, blurred by `noise`."""
    blurred = risk + np.random.default_rng(seed).normal(scale=noise, size=len(risk))
    return 1 / (1 + np.exp(-(2 * blurred - 1.5)))


def test_a_candidate_worse_for_one_airline_is_refused_and_the_airline_named() -> None:
    frame, risk = flights()
    champion = scored(risk, noise=0.8, seed=1)
    candidate = scored(risk, noise=0.2, seed=2)  # better everywhere ...
    ev = (frame["carrier"] == "EV").to_numpy()
    # ... but on EV it knows nothing: its score there is noise.
    candidate[ev] = np.random.default_rng(3).permutation(candidate[ev])
    labels = frame[LABEL].to_numpy()
    metrics = TASK.evaluate(labels, candidate, 0.5)

    decision, champion_metrics, evidence = gate(
        frame, metrics, (candidate, 0.5), (champion, 0.5), LABEL, USECASE.slices, RULES, TASK
    )

    # Better on average by more than the margin: the aggregate gate alone would promote it.
    assert champion_metrics is not None
    assert metrics["roc_auc"] - champion_metrics["roc_auc"] > RULES.min_improvement
    assert not decision.promote
    assert "carrier=EV" in decision.reason
    assert "roc_auc" in decision.reason
    # No other airline, airport, month or distance band is named.
    named = {part for part in decision.reason.split() if "=" in part}
    assert named == {"carrier=EV"}, decision.reason
    assert {row["slice"] for row in evidence["candidate"]} == {
        "carrier",
        "origin",
        "month",
        "distance",
    }


def test_the_same_candidate_without_the_fault_is_promoted() -> None:
    frame, risk = flights()
    champion, candidate = scored(risk, 0.8, 1), scored(risk, 0.2, 2)
    metrics = TASK.evaluate(frame[LABEL].to_numpy(), candidate, 0.5)
    decision, _, _ = gate(
        frame, metrics, (candidate, 0.5), (champion, 0.5), LABEL, USECASE.slices, RULES, TASK
    )
    assert decision.promote, decision.reason


def test_a_small_slice_does_not_decide() -> None:
    """A part with fewer test flights than `promotion.slices.min_support` is reported but never
    refuses a candidate: its metric says too little."""
    frame, risk = flights()
    frame.loc[frame.index[:300], "carrier"] = "HA"  # 300 flights: under the 500 required
    champion, candidate = scored(risk, 0.8, 1), scored(risk, 0.2, 2)
    ha = (frame["carrier"] == "HA").to_numpy()
    candidate[ha] = np.random.default_rng(3).permutation(candidate[ha])
    metrics = TASK.evaluate(frame[LABEL].to_numpy(), candidate, 0.5)
    decision, _, evidence = gate(
        frame, metrics, (candidate, 0.5), (champion, 0.5), LABEL, USECASE.slices, RULES, TASK
    )
    assert decision.promote, decision.reason
    assert any(row["value"] == "HA" for row in evidence["candidate"])
