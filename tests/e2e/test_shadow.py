"""Shadow scoring on a copy of the trained platform: a challenger the gate did not promote is
packaged beside the champion, scored on every request without changing an answer, logged
beside it, and compared with it by the monitor on the same requests once outcomes arrive."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import bentoml
import pandas as pd
import pytest
from sklearn import metrics as skm

from configs import handoff
from configs.settings import _deep_merge
from monitoring import prediction_log as pl
from pipelines.chain import run_chain
from tests.conftest import platform_overrides, platform_settings
from tests.lake_helpers import problems
from tests.serving_helpers import PLATFORM, SCORE

SHADOW = {
    "serving": {"shadow_challenger": True},
    "monitoring": {
        "drift": {"min_rows": 50, "window_days": 31},
        # judged on the drift share alone: the others switched off
        "retrain": {"min_live_metric": None, "max_model_age_days": None, "min_outcomes": 50},
    },
}
# Another model family's settings, and a gate it cannot pass: the new version stays challenger.
CHALLENGER = {
    # as configured, untuned: a study over the champion's space could find the champion again
    "training": {
        "model": {"params": {"num_leaves": 3, "learning_rate": 0.3}},
        "tuning": {"trials": 0},
    },
    "promotion": {"min_improvement": 1.0},
}


@pytest.fixture(scope="module")
def shadowed(platform_trained_root: Path, spark, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the platform with a challenger (version 2), packaged with shadow on."""
    root = tmp_path_factory.mktemp("shadow") / "platform"
    # without what other tests logged and decided on the shared platform
    shutil.copytree(
        platform_trained_root,
        root,
        ignore=shutil.ignore_patterns("serve-*.log", "prediction_log", "monitoring"),
    )
    trained = run_chain(
        platform_settings(root, **CHALLENGER), ("fit", "promote"), spark=spark, handoff={}
    )
    assert all(r.ok for r in trained), problems(trained)
    settings = platform_settings(root, **SHADOW)
    packaged = run_chain(settings, ("package",), spark=spark)
    assert packaged[0].ok, problems(packaged)
    return root, settings, packaged[0].handoff[handoff.BENTO_TAG_KEY]


def test_the_bento_carries_the_challenger_beside_the_champion(shadowed) -> None:
    from models.tracking import CHALLENGER as CHALLENGER_ALIAS
    from models.tracking import Tracker

    _, settings, tag = shadowed
    tracker = Tracker(settings)
    assert tracker.alias(CHALLENGER_ALIAS).version == "2"
    assert tracker.alias(handoff.ALIAS).version == "1"
    bento = bentoml.bentos.get(tag)
    assert bento.info.labels[handoff.SHADOW_RUN_LABEL] == tracker.alias(CHALLENGER_ALIAS).run_id
    assert len(bento.info.models) == 2, bento.info.models
    envs = {e.name: e.value for e in bento.info.envs}
    shadow_tag = envs[settings.names.shadow_model_tag_variable]
    shadow = bentoml.models.get(shadow_tag)
    assert shadow.info.labels[handoff.VERSION_LABEL] == "2"
    assert (
        bentoml.models.get(envs[settings.names.model_tag_variable]).info.labels[
            handoff.VERSION_LABEL
        ]
        == "1"
    )


def _requests(settings, month: str, count: int) -> list:
    """`count` real readings of `month` from silver, as clients would send them (so their
    outcomes can be joined once they land)."""
    from pipelines.adapters.storage import StorageLayout

    columns = ["reading_id", "meter_id", "facility_id", "reading_utc"]
    silver = StorageLayout(settings.paths).read_silver_columns("meter_readings", columns)
    assert silver is not None
    taken = pd.to_datetime(silver["reading_utc"], utc=True)
    chosen = silver[taken.dt.strftime("%Y-%m") == month].sort_values("reading_id").head(count)
    return [
        PLATFORM.request.item.model_validate(
            {
                "meter_id": row.meter_id,
                "facility_id": row.facility_id,
                "reading_at": pd.Timestamp(row.reading_utc).tz_convert("UTC").isoformat(),
            }
        )
        for row in chosen.itertuples()
    ]


def test_the_challenger_is_scored_in_shadow_logged_and_compared_by_the_monitor(
    shadowed, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.tracking import Tracker
    from pipelines.adapters.storage import StorageLayout
    from pipelines.monitor import decisions
    from serving.__main__ import packaged_model_tags
    from serving.service import PredictionService
    from usecases import load

    root, settings, _ = shadowed
    champion_tag, shadow_tag = packaged_model_tags(settings)
    assert shadow_tag is not None
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(_deep_merge(platform_overrides(root), SHADOW)))
    monkeypatch.setenv(settings.names.model_tag_variable, champion_tag)
    monkeypatch.setenv(settings.names.shadow_model_tag_variable, shadow_tag)
    service = PredictionService()
    gc.unfreeze()  # the service freezes the worker's heap; this test process is not a worker
    items = _requests(settings, "2024-03", 300)
    assert len(items) == 300
    answered = [
        prediction
        for start in range(0, len(items), 100)
        for prediction in service.predict(items[start : start + 100]).predictions
    ]
    service.close_prediction_log()
    # the client's answers come from the champion alone
    assert {p.model_version for p in answered} == {"1"}

    table = pl.read_log(settings.paths.prediction_log).to_pandas()
    served = table[table[pl.SOURCE] == "service"].set_index(pl.PREDICTION_ID)
    shadow = table[table[pl.SOURCE] == pl.SHADOW_SOURCE].set_index(pl.PREDICTION_ID)
    assert len(served) == len(shadow) == len(items)
    assert set(shadow[pl.MODEL_VERSION]) == {"2"}
    for prediction in answered:
        twin = shadow.loc[prediction.prediction_id + pl.SHADOW_ID_SUFFIX]
        mine = served.loc[prediction.prediction_id]
        assert mine[pl.SCORE] == getattr(prediction, SCORE)
        assert twin[pl.ROW_ID] == mine[pl.ROW_ID]
    # the shadow scores are the challenger's own on the inputs logged
    tracker = Tracker(settings)
    challenger = tracker.load_model(tracker.version("2"))
    inputs = shadow[[pl.input_column(f) for f in challenger.features]].to_numpy()
    assert list(shadow[pl.SCORE]) == pytest.approx(list(challenger.probabilities(inputs)))
    twins = served.loc[shadow.index.str.removesuffix(pl.SHADOW_ID_SUFFIX), pl.SCORE]
    assert (shadow[pl.SCORE].to_numpy() != twins.to_numpy()).any()  # another model indeed

    # the monitor: drift on the answers only, both versions measured on the same requests
    results = run_chain(settings, ("monitor",), spark=spark)
    assert results[0].ok, problems(results)
    (decision,) = decisions(settings)
    assert decision["rows"] == len(items) and decision["champion_version"] == "1"
    usecase = load(settings.usecase)
    silver = StorageLayout(settings.paths).read_silver_columns(
        usecase.examples.table, list(usecase.examples.columns)
    )
    examples = usecase.examples
    labels = examples.labelled(silver, settings.params).set_index(examples.row_id)[examples.label]
    for version, rows in (("1", served), ("2", shadow)):
        joined = rows.join(labels.rename("outcome"), on=pl.ROW_ID, how="inner")
        figures = decision["shadow"][version]
        assert figures["rows"] == len(joined) > 50
        assert figures["roc_auc"] == pytest.approx(
            skm.roc_auc_score(joined["outcome"], joined[pl.SCORE])
        )
