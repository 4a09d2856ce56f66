"""A retrain after new months have landed learns from them: with rolling windows
(`training.split.kind: rolling`), the first training tests on February's newest weeks; March
lands, the chain runs again, and the new version's training set reaches into the weeks the
first one was tested on, its test window the newest weeks of March. The gate judges both
versions on that window, and says so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.tracking import DECISION, REASON, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import problems

ROLLING = {"kind": "rolling", "test_weeks": 2, "validation_weeks": 2}


def settings(root: Path, months: list[str]):
    return platform_settings(root, land={"months": months}, training={"split": ROLLING})


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, spark) -> Tracker:
    """January and February trained on; then March lands and the chain runs again."""
    root = tmp_path_factory.mktemp("continuous")
    for months in (["2024-01", "2024-02"], ["2024-01", "2024-02", "2024-03"]):
        results = run_chain(settings(root, months), CHAIN, spark=spark)
        assert all(r.ok for r in results), problems(results)
    return Tracker(settings(root, []))


def test_the_retrain_learns_from_the_new_months_and_tests_on_the_newest_weeks(
    retrained: Tracker,
) -> None:
    first, second = (retrained.version(n) for n in ("1", "2"))
    before, after = (retrained.run_params(v.run_id) for v in (first, second))
    assert before["split.kind"] == after["split.kind"] == "rolling"
    # the first tested on February's last two weeks, the second on March's
    assert (before["split.test_start"], before["split.test_to"]) == ("2024-02-16", "2024-02-29")
    assert (after["split.test_start"], after["split.test_to"]) == ("2024-03-18", "2024-03-31")
    # the second learned from what the first was tested on (training ends after it)
    assert after["split.validation_start"] == "2024-03-04"
    assert pd.Timestamp(after["split.validation_start"]) > pd.Timestamp(before["split.test_to"])
    training_to = retrained.client.get_run(second.run_id).data.tags["last_example_date"]
    assert training_to == "2024-03-31"
    # ... and learned from every row the first one had (its training, validation and test
    # weeks), and from March's first days
    first_run, second_run = (retrained.run_metrics(v.run_id) for v in (first, second))
    everything_before = sum(first_run[f"{part}_rows"] for part in ("train", "validation", "test"))
    per_day = first_run["test_rows"] / 14  # the platform's data: as many examples each day
    assert first_run["train_rows"] == 32 * per_day  # 1 January to 1 February
    assert second_run["train_rows"] == everything_before + 3 * per_day  # and 1 to 3 March


def test_the_gate_judges_on_the_candidates_newest_weeks_and_says_so(retrained: Tracker) -> None:
    second = retrained.version("2")
    assert second.tags[DECISION] in ("promoted", "not_promoted")
    assert "judged on the candidate's test window 2024-03-18..2024-03-31" in second.tags[REASON]
