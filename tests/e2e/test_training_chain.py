"""The whole chain on the platform's own use case: features, training, the champion gate,
rollback, the report, the Bento."""

from __future__ import annotations

from pathlib import Path

from models.tracking import CHAMPION, Tracker
from pipelines import promote
from pipelines.chain import CHAIN, run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import problems


def test_chain_trains_promotes_then_refuses_an_equal_model(tmp_path: Path, spark) -> None:
    settings = platform_settings(tmp_path)
    first = run_chain(settings, CHAIN, spark=spark)
    assert [r.stage for r in first] == list(CHAIN)
    assert all(r.ok for r in first), problems(first)
    by_stage = {r.stage: r for r in first}
    assert "version 1 is the new champion" in by_stage["promote"].notes[0]
    report = Path(by_stage["report"].outputs["report"])
    html = report.read_text()
    assert "in 10 meter readings in the test period were over the bound" in html
    assert "Of the meter readings it flags as likely over the bound" in html
    assert (report.parent / "calibration.png").is_file()

    tracker = Tracker(settings)
    run = tracker.client.get_run(by_stage["fit"].handoff["run_id"])
    assert {
        "test_roc_auc",
        "test_pr_auc",
        "test_log_loss",
        "test_brier",
        "test_precision",
        "test_recall",
    } <= set(run.data.metrics)
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        # The use case's slices: the probabilities' reliability for each part.
        "plots/calibration_by_facility.png",
        "plots/calibration_by_hour.png",
    }
    # The study (training.tuning.trials: 3): each trial a nested run of the training run,
    # the first as configured, and its best handed on.
    trials = tracker.client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
    )
    assert sorted(t.data.params["trial"] for t in trials) == ["0", "1", "2"]
    assert all("validation_roc_auc" in t.data.metrics for t in trials)
    best = max(t.data.metrics["validation_roc_auc"] for t in trials)
    assert run.data.metrics["tuning.best_validation_roc_auc"] == best
    assert run.data.metrics["validation_roc_auc"] == best  # the refit is the best trial's model
    # Each slice's support and metric, per part.
    assert {"slice.facility.S1.support", "slice.facility.S1.roc_auc"} <= set(run.data.metrics)
    assert run.data.tags["feature_service"] == "synthetic_meters_model_v1"

    # The Bento is pinned to the champion and holds its Dockerfile.
    bento = Path(by_stage["package"].outputs["bento"])
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text().splitlines()
    # The image runs as BentoML's non-root user (uid 1034, as the AWS task states), from the
    # last USER line to the entrypoint.
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users and users[-1] == "bentoml"
    assert "ARG BENTO_USER_UID=1034" in dockerfile
    last_user = max(i for i, line in enumerate(dockerfile) if line.startswith("USER "))
    assert any(line.startswith("ENTRYPOINT") for line in dockerfile[last_user:])
    bento_info = (bento / "bento.yaml").read_text()
    assert "mlflow_model_version: '1'" in bento_info
    assert "SYNTHETIC_METERS_MODEL_TAG" in bento_info
    assert "OMP_NUM_THREADS" in bento_info

    second = run_chain(settings, CHAIN, spark=spark)
    assert all(r.ok for r in second), problems(second)
    by_stage = {r.stage: r for r in second}
    assert "silver unchanged" in by_stage["features"].notes[0]
    assert "version 2 not promoted, because" in by_stage["promote"].notes[0]
    assert "not rebuilt" in by_stage["package"].notes[0]
    assert tracker.alias(CHAMPION).version == "1"
    # Same data and config: the same metrics (the reproducibility guarantee).
    metrics = [tracker.run_metrics(tracker.version(v).run_id) for v in ("1", "2")]
    assert metrics[0] == metrics[1]

    # A model promoted on equal metrics (margin 0) can be rolled back to the one it replaced.
    lenient = settings.with_overrides({"promotion": {"min_improvement": 0.0}})
    third = run_chain(lenient, ("fit", "promote"), spark=spark)
    assert "version 3 is the new champion" in third[-1].notes[0]
    assert promote.rollback(lenient).ok
    assert tracker.alias(CHAMPION).version == "1"
    history = promote.promotion_history(lenient)
    assert [(h["version"], h["decision"]) for h in history] == [
        ("1", "promoted"),
        ("2", "not_promoted"),
        ("3", "promoted"),
    ]
