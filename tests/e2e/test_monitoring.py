"""The monitor on the trained platform: batch scores land in the prediction log, `monitor`
compares their window with the champion's reference set, measures live performance once the
outcomes are in silver (equal to the same figures computed by hand), finds and names an input
shifted into another unit, and decides both ways by its bounds, each decision recorded."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from monitoring import prediction_log as pl
from pipelines.chain import run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import problems
from tests.serving_helpers import DECISION, PLATFORM, SCORE

MONTH = "2024-03"
ROW_ID, TABLE = PLATFORM.examples.row_id, PLATFORM.examples.table
# The meter's last reading, as the model reads it.
METER_LAST = PLATFORM.views[0].features[0].name
# Only the bound under test decides (the others are switched off).
QUIET = {
    "max_drifted_share": 1.0,
    "on_score_drift": False,
    "min_live_metric": None,
    "max_model_age_days": None,
    "min_outcomes": 50,
}


def monitored(root: Path, tmp_path: Path, **retrain: Any):
    return platform_settings(root).with_overrides(
        {
            "paths": {
                "prediction_log": str(tmp_path / "prediction_log"),
                "monitoring": str(tmp_path / "monitoring"),
                "reports": str(tmp_path / "reports"),
            },
            "monitoring": {
                "drift": {"min_rows": 50, "window_days": 35},  # the month, whatever its zones
                "retrain": {**QUIET, **retrain},
            },
        }
    )


@pytest.fixture(scope="module")
def scored(platform_trained_root: Path, spark, tmp_path_factory: pytest.TempPathFactory):
    """A month of batch scores, logged: (the log's folder, the scores batch-predict wrote)."""
    from pipelines.batch_predict import predictions_dir

    tmp_path = tmp_path_factory.mktemp("monitoring")
    settings = monitored(platform_trained_root, tmp_path)
    results = run_chain(settings, ("batch-predict",), spark=spark, handoff={"period": MONTH})
    assert results[0].ok, problems(results)
    return tmp_path, pd.read_parquet(predictions_dir(settings, MONTH))


def test_every_batch_score_is_in_the_prediction_log(scored) -> None:
    tmp_path, written = scored
    table = pl.read_log(str(tmp_path / "prediction_log"))
    assert table is not None
    logged = table.to_pandas().set_index(pl.ROW_ID).sort_index()
    expected = written.set_index(ROW_ID).sort_index()
    assert list(logged.index) == list(expected.index)
    assert list(logged[pl.SCORE]) == pytest.approx(list(expected[SCORE]), abs=1e-12)
    assert set(logged[pl.SOURCE]) == {"batch"} and set(logged[pl.MODEL_VERSION]) == {"1"}
    assert logged[pl.input_column("local_hour")].notna().all()


def test_the_monitor_measures_live_performance_as_computed_by_hand(
    platform_trained_root: Path, spark, scored
) -> None:
    from pipelines.adapters.storage import StorageLayout
    from pipelines.monitor import decisions
    from usecases import load

    tmp_path, written = scored
    settings = monitored(platform_trained_root, tmp_path)
    results = run_chain(settings, ("monitor",), spark=spark)
    assert results[0].ok, problems(results)
    (decision,) = decisions(settings)
    assert decision["rows"] == len(written) and decision["champion_version"] == "1"
    assert decision["window_to"].startswith(MONTH)
    # by hand: the month's scores joined with the outcomes in silver
    usecase = load(settings.usecase)
    silver = StorageLayout(settings.paths).read_silver_columns(
        usecase.examples.table, list(usecase.examples.columns)
    )
    examples = usecase.examples
    labels = examples.labelled(silver, settings.params).set_index(ROW_ID)[examples.label]
    # (the batch output's decision field is the model's; the outcome is silver's)
    joined = written.join(labels.rename("outcome"), on=ROW_ID, how="inner")
    live = decision["live"]["1"]
    assert live["rows"] == len(joined) > 50
    assert live["roc_auc"] == pytest.approx(skm.roc_auc_score(joined["outcome"], joined[SCORE]))
    assert live["recall"] == pytest.approx(skm.recall_score(joined["outcome"], joined[DECISION]))
    assert live["precision"] == pytest.approx(
        skm.precision_score(joined["outcome"], joined[DECISION], zero_division=0)
    )
    assert decision["decision"] == "keep"  # every bound switched off but the drift share 100%
    # which rows the drift was judged against, and why (`monitoring.drift.reference`)
    assert decision["reference"]["kind"] in ("seasonal", "recent", "training")
    assert decision["reference"]["rows"] > 0 and decision["reference"]["why"]
    reports = list((tmp_path / "reports" / "monitoring").glob("*.html"))
    assert reports and "<html" in reports[0].read_text()[:2000].lower()
    # the page says which rows the window was judged against
    assert f"drift judged against {decision['reference']['kind']}" in reports[0].read_text()


def test_an_input_in_the_wrong_unit_is_flagged_by_name(
    platform_trained_root: Path, spark, scored, tmp_path: Path
) -> None:
    """The meter's last reading in tenths where the model learnt units."""
    from pipelines.monitor import decisions

    source, _ = scored
    as_logged = monitored(platform_trained_root, tmp_path / "as-logged")
    shutil.copytree(source / "prediction_log", tmp_path / "as-logged" / "prediction_log")
    shifted = monitored(platform_trained_root, tmp_path / "shifted")
    shutil.copytree(source / "prediction_log", tmp_path / "shifted" / "prediction_log")
    column = pl.input_column(METER_LAST)
    for part in (tmp_path / "shifted" / "prediction_log").rglob("*.parquet"):
        table = pq.read_table(part).to_pandas()
        table[column] = table[column] * 10
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    drifted = {}
    for name, settings in (("as logged", as_logged), ("shifted", shifted)):
        results = run_chain(settings, ("monitor",), spark=spark)
        assert results[0].ok, problems(results)
        (decision,) = decisions(settings)
        drifted[name] = set(decision["drifted"])
    assert drifted["shifted"] - drifted["as logged"] == {METER_LAST}


def test_the_decision_goes_both_ways_by_its_bounds(
    platform_trained_root: Path, spark, scored
) -> None:
    """The same month judged against two bounds on the live ROC AUC: above one, below the other."""
    from pipelines import cli
    from pipelines.monitor import decisions

    source, _ = scored
    for bound, expected in ((0.0, "keep"), (1.01, "retrain")):
        folder = source / f"bound-{bound}"
        shutil.copytree(source / "prediction_log", folder / "prediction_log")
        settings = monitored(platform_trained_root, folder, min_live_metric=bound)
        results = run_chain(settings, ("monitor",), spark=spark)
        assert results[0].ok, problems(results)
        assert results[0].handoff["decision"] == expected
        (decision,) = decisions(settings)
        assert decision["decision"] == expected, decision["reasons"]
        if expected == "retrain":
            assert (
                f"live roc_auc {decision['live']['1']['roc_auc']:.3f} of version 1"
                in (decision["reasons"][0])
            )
    assert cli._monitoring(settings) == cli.EXIT_OK


def test_no_log_yet_is_no_verdict_and_no_failure(
    platform_trained_root: Path, spark, tmp_path: Path
) -> None:
    """A first deploy runs the monitor after its first chain, before any traffic: the run must
    not fail for it (on AWS a failed monitor step would fail the run and alert)."""
    from pipelines.monitor import decisions

    settings = monitored(platform_trained_root, tmp_path)
    results = run_chain(settings, ("monitor",), spark=spark)
    assert results[0].ok, problems(results)
    assert results[0].handoff["decision"] == "no verdict"
    assert any("no predictions logged yet" in note for note in results[0].notes)
    assert decisions(settings) == []


def test_lineage_goes_from_a_prediction_back_to_the_drops(
    platform_trained_root: Path, scored
) -> None:
    from pipelines.adapters.storage import StorageLayout
    from pipelines.lineage import render, trace
    from pipelines.results import StageFailed

    source, _ = scored
    settings = monitored(platform_trained_root, source)
    table = pl.read_log(str(source / "prediction_log"))
    assert table is not None
    record = table.slice(0, 1).to_pylist()[0]
    traced = trace(settings, record[pl.PREDICTION_ID])
    assert traced["prediction"][pl.ROW_ID] == record[pl.ROW_ID]
    assert traced["model_version"]["version"] == "1" and traced["model_version"]["champion_now"]
    assert traced["model_version"]["gate"]["gate.decision"] == "promoted"
    run = traced["run"]
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", run["git_commit"]), run["git_commit"]
    assert run["training_window"][0] < run["training_window"][1]
    (dataset,) = run["training_set"]  # recorded with mlflow.log_input
    assert dataset["name"] == "training_set" and dataset["digest"]
    # every drop the model learnt from, with the content hash silver holds for it
    layout = StorageLayout(settings.paths)
    drops = traced["data"]["landing_drops"][TABLE]
    markers = layout.drops_in(layout.silver(TABLE))
    assert set(drops) == set(markers) == {"2024-01", "2024-02", "2024-03"}
    for drop_id, drop in drops.items():
        assert drop["content_hash"] == markers[drop_id].content_hash
        assert drop["gate_results"], drop_id
    assert traced["data"]["feature_service"]["name"]
    assert traced["bentos"], "package built a Bento of version 1"
    text = render(traced)
    assert text.startswith(f"prediction {record[pl.PREDICTION_ID]}")
    assert f"<- drop {TABLE}/2024-01 sha256:" in text and "-> Bentos: " in text
    assert f"feature table {PLATFORM.views[0].name}: gated" in text
    # the same chain from the model version alone
    assert trace(settings, "1")["run"] == run
    with pytest.raises(StageFailed, match=r"no prediction 0{32}"):
        trace(settings, "0" * 32)
    with pytest.raises(StageFailed, match="neither a model version"):
        trace(settings, "latest")
    with pytest.raises(StageFailed, match="model version 99 is not in the registry"):
        trace(settings, "99")


def test_a_request_for_a_reading_is_logged_under_silver_s_row_id(
    platform_trained_root: Path,
) -> None:
    """Served predictions can be joined with their outcomes only if the id the service builds
    from a request equals the one silver holds for the same reading."""
    from pipelines.adapters.storage import StorageLayout

    settings = platform_settings(platform_trained_root)
    request, rows = PLATFORM.request, PLATFORM.examples
    silver = StorageLayout(settings.paths).read_silver_columns(
        rows.table, [rows.row_id, "meter_id", "facility_id", "reading_utc"]
    )
    assert silver is not None and len(silver) > 1000
    for row in silver.itertuples():
        item = request.item.model_validate(
            {
                "meter_id": row.meter_id,
                "facility_id": row.facility_id,
                "reading_at": pd.Timestamp(row.reading_utc).tz_convert("UTC").isoformat(),
            }
        )
        assert request.row(item)[rows.row_id] == getattr(row, rows.row_id)
