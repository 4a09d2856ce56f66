"""`make replay`: the monitoring loop played over the use case's past data, one period at a
time, to show that it works: drift seen, decay measured once outcomes arrive, retraining
when the monitor decides to, the gate deciding promotion.

    .venv/bin/python -m bench.replay            # make replay
    .venv/bin/python -m bench.replay --shift    # make replay-shift: with the injected shift

The use case's `replay:` config names the periods (months, YYYY-MM). The first model is
trained on `replay.train`; then for each of `replay.periods`:

1. the period's drop lands and goes through collect, the quality gate and the features (the
   batch scorer reads the period's rows and their features from the lake; the point-in-time
   join gives each row only what was known before its moment, and no model has seen them);
2. the champion scores the period (`batch-predict`), every score going to the prediction log;
3. `monitor` judges the period's scores against the champion's reference set and, the
   outcomes being in silver now, measures the champion's live performance;
4. when it decides to retrain, the whole chain runs (as `monitor --retrain` does), with the
   newest period as its test set: the champion/challenger gate decides promotion.

`--shift` first changes `replay.shift`'s column in its period's upstream file (a column sent
in another unit): the monitor must flag that period's drift and name the input it reaches; the
run fails if it does not. It all runs in one process with one Spark session, its data under
`bench/work/replay*/`; the timeline goes to `bench/results/replay*.json` and a plot beside it.
"""

from __future__ import annotations

import argparse
import calendar
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import WORK, print_table, save_figure, workspace_overrides, write_result
from configs import Settings, handoff, load_settings
from configs.chain import CHAIN
from configs.settings import ReplayShift
from monitoring import decisions
from pipelines.chain import run_chain
from pipelines.land import read_source, source_dir
from pipelines.results import StageResult
from storage import files as fs
from usecases import load as load_usecase

# Land the period and take it through the gate and into the feature tables.
DATA_STAGES = ("land", "collect", "validate", "features")


class ReplayFailed(RuntimeError):
    pass


def _days(period: str) -> int:
    year, month = (int(part) for part in period.split("-"))
    return calendar.monthrange(year, month)[1]


def shifted_source(settings: Settings, shift: ReplayShift, folder: Path) -> Path:
    """A copy of the upstream files with `shift` applied to its period's rows: returns the
    folder to land from."""
    usecase = load_usecase(settings.usecase)
    original = source_dir(settings, usecase)
    folder.mkdir(parents=True, exist_ok=True)
    for source in usecase.sources:
        for name in (source.file, source.file.removesuffix(".zip")):
            if (original / name).is_file():
                shutil.copy2(original / name, folder / name)
    (source,) = [s for s in usecase.sources if s.name == shift.source]
    if source.drop_period is None:
        raise ReplayFailed(f"replay.shift: source {source.name} does not arrive by period")
    rows = read_source(original, source)
    chosen = (source.drop_period(rows) == shift.period) & ~rows[shift.column].isin(["", "NA"])
    if not chosen.any():
        raise ReplayFailed(f"replay.shift: no {shift.column} values in {shift.period}")
    values = pd.to_numeric(rows.loc[chosen, shift.column]) * shift.scale + shift.offset
    rows.loc[chosen, shift.column] = values.round(2).astype(str)
    (folder / source.file).unlink(missing_ok=True)  # the zip, if it came as one
    rows.to_csv(folder / source.file.removesuffix(".zip"), index=False)
    return folder


def _ok(results: list[StageResult], what: str) -> list[StageResult]:
    failed = [r for r in results if not r.ok]
    if failed:
        raise ReplayFailed(f"{what}: {failed[0].stage} failed: {'; '.join(failed[0].problems)}")
    return results


def _stage(results: list[StageResult], name: str) -> StageResult | None:
    return next((r for r in results if r.stage == name), None)


def replay(base: Settings, folder: Path, shift: ReplayShift | None) -> list[dict[str, Any]]:
    from pipelines.adapters.spark import get_spark

    plan = base.replay
    if not plan.train or not plan.periods:
        raise ReplayFailed(f"use case {base.usecase} sets no replay.train and replay.periods")
    source = shifted_source(base, shift, folder / "source") if shift else None
    spark = get_spark(base.spark)

    def settings(landed: list[str], newest: str) -> Settings:
        """Land only what has arrived; monitor the newest period whole. A retrain splits as
        the use case's config says (`training.split`), as every retrain does."""
        return base.with_overrides(
            {
                "land": {"months": landed} | ({"source_dir": str(source)} if source else {}),
                "monitoring": {"drift": {"window_days": _days(newest)}},
            }
        )

    landed = list(plan.train)
    started = time.perf_counter()
    first = _ok(run_chain(settings(landed, landed[-1]), CHAIN, spark=spark), "first training")
    frozen = _stage(first, "promote").handoff.get("champion_version")  # type: ignore[union-attr]
    assert frozen is not None
    print(f"trained on {landed[0]}..{landed[-1]}: version {frozen} serves", flush=True)
    newest = frozen
    timeline = []
    for period in plan.periods:
        landed.append(period)
        current = settings(landed, period)
        tick = time.perf_counter()
        _ok(run_chain(current, DATA_STAGES, spark=spark), f"{period}: landing")
        scored = _ok(
            run_chain(current, ("batch-predict",), spark=spark, handoff={"period": period}),
            f"{period}: scoring",
        )
        # What the monitor would have said against the champion's training rows (the
        # reference before `monitoring.drift.reference`), then what it says as configured.
        against_training = against_training_rows(current)
        _ok(run_chain(against_training, ("monitor",), spark=spark), f"{period}: monitor (training)")
        _ok(run_chain(current, ("monitor",), spark=spark), f"{period}: monitor")
        decision = decisions.newest(current.paths.monitoring)
        before = decisions.newest(against_training.paths.monitoring)
        assert decision is not None and before is not None
        serving = decision["champion_version"]
        live = decision["live"].get(serving, {})
        measured = measured_live(
            current, spark, period, {"champion": serving, "frozen": frozen, "newest": newest}
        )
        row = {
            "period": period,
            "serving": serving,
            "scored": scored[0].rows_out,
            "reference": decision.get("reference", {}),
            "drifted_share": decision["drifted_share"],
            "drifted": decision["drifted"],
            "drift": {d["column"]: d["value"] for d in decision["drift"]},
            "score_drift": (decision.get("score_drift") or {}).get("value"),
            "drift_alarm": drift_alarm(decision, current),
            "training_reference": {
                "drifted_share": before["drifted_share"],
                "drifted": before["drifted"],
                "drift_alarm": drift_alarm(before, current),
            },
            "live_roc_auc": live.get("roc_auc"),
            "live_outcomes": live.get("rows"),
            "metric": measured["metric"],
            "champion_live": measured["champion"],
            "frozen_live": measured["frozen"],
            # the newest model a retrain made before this period, promoted or not
            "newest": newest,
            "newest_live": measured["newest"],
            "decision": decision["decision"],
            "reasons": decision["reasons"],
            "retrained": None,
        }
        if decision["decision"] == handoff.RETRAIN:
            retrained = _ok(run_chain(current, CHAIN, spark=spark), f"{period}: retraining")
            gate = _stage(retrained, "promote")
            assert gate is not None
            version = gate.handoff.get("decided_version")
            promoted = gate.handoff.get("champion_version") == version
            newest = version or newest
            row["retrained"] = f"v{version} {'promoted' if promoted else 'not promoted'}"
            row["gate"] = "; ".join(gate.notes)
        row["seconds"] = round(time.perf_counter() - tick, 1)
        timeline.append(row)
        print(
            f"{period}: v{serving} scored {row['scored']:,}; "
            f"{len(row['drifted'])} inputs drifted against the {row['reference'].get('kind')} "
            f"reference ({len(row['training_reference']['drifted'])} against training); "
            f"{row['metric']} v{serving} {_fmt(row['champion_live'])}, frozen v{frozen} "
            f"{_fmt(row['frozen_live'])}, newest retrained v{row['newest']} "
            f"{_fmt(row['newest_live'])}; "
            f"{row['decision']}" + (f" -> {row['retrained']}" if row["retrained"] else ""),
            flush=True,
        )
        for line in [*row["reasons"], *([row["gate"]] if row["retrained"] else [])]:
            print(f"    {line}", flush=True)
    print(
        f"the first training and {len(plan.periods)} periods took "
        f"{time.perf_counter() - started:.0f} s"
    )
    return timeline


def against_training_rows(settings: Settings) -> Settings:
    """The same monitor judging drift against the champion's training rows, its decisions
    kept apart (they are what the configured reference is compared with, never acted on)."""
    return settings.with_overrides(
        {
            "monitoring": {"drift": {"reference": "training"}},
            "paths": {"monitoring": fs.join(settings.paths.monitoring, "against-training")},
        }
    )


def drift_alarm(decision: dict[str, Any], settings: Settings) -> bool:
    """Whether drift alone would have decided a retrain: too many inputs, or the score."""
    bounds = settings.monitoring.retrain
    score = decision.get("score_drift") or {}
    return decision["drifted_share"] > bounds.max_drifted_share or bool(
        bounds.on_score_drift and score.get("drifted")
    )


def measured_live(
    settings: Settings, spark: Any, period: str, versions: dict[str, str]
) -> dict[str, Any]:
    """The gate's primary metric of each model version (by name) on every labelled example
    of `period`, the same rows for each: their inputs as of each example's moment (Feast's
    point-in-time join, as batch scoring reads them)."""
    from features.inputs import offline_frame
    from features.store import feature_store
    from models import evaluation
    from models.tracking import Tracker
    from pipelines.adapters.storage import StorageLayout
    from pipelines.batch_predict import silver_rows
    from usecases.project import bind

    project = bind(settings)
    usecase = project.usecase
    rows = usecase.examples.labelled(
        silver_rows(spark, StorageLayout(settings.paths), usecase, period), project.settings.params
    )
    frame = offline_frame(feature_store(settings), project.settings, rows)
    labels = frame[usecase.examples.label].to_numpy()
    task = evaluation.task(usecase.target.kind)
    metric = settings.promotion.primary_metric
    tracker = Tracker(settings)
    measured: dict[str, Any] = {"metric": metric, "rows": len(frame)}
    for name, version in versions.items():
        model, answering = tracker.load_answering_model(tracker.version(version))
        figures = task.evaluate(labels, model.predict(frame), answering.threshold)
        measured[name] = figures[metric]
    return measured


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def plot(name: str, title: str, timeline: list[dict[str, Any]], settings: Settings) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = [row["period"] for row in timeline]
    metric = timeline[0]["metric"]
    fig, (auc, drift) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    auc.plot(periods, [row["champion_live"] for row in timeline], marker="o", label="serving")
    auc.plot(
        periods,
        [row["frozen_live"] for row in timeline],
        marker="s",
        linestyle=":",
        label="frozen after the first training",
    )
    auc.plot(
        periods,
        [row["newest_live"] for row in timeline],
        marker="^",
        linestyle="--",
        label="newest retrained (promoted or not)",
    )
    auc.legend(loc="lower left", fontsize="small")
    for index, row in enumerate(timeline):
        auc.annotate(
            f"v{row['serving']}",
            (index, row["champion_live"] or 0),
            xytext=(4, 4),
            textcoords="offset points",
        )
    bounds = settings.monitoring.retrain
    if bounds.min_live_metric is not None:
        auc.axhline(bounds.min_live_metric, color="grey", linestyle="--", linewidth=1)
    auc.set(ylabel=f"live {metric}", title=title)
    width = 0.38
    positions = np.arange(len(periods))
    drift.bar(
        positions - width / 2,
        [row["training_reference"]["drifted_share"] for row in timeline],
        width,
        color="tab:grey",
        label="against the training rows",
    )
    drift.bar(
        positions + width / 2,
        [row["drifted_share"] for row in timeline],
        width,
        color="tab:orange",
        label=f"against the {settings.monitoring.drift.reference} reference",
    )
    drift.legend(loc="upper right", fontsize="small")
    for index, row in enumerate(timeline):
        if row["decision"] == handoff.RETRAIN:
            drift.annotate(
                "retrain",
                (index + width / 2, row["drifted_share"]),
                ha="center",
                xytext=(0, 3),
                textcoords="offset points",
            )
    drift.axhline(bounds.max_drifted_share, color="grey", linestyle="--", linewidth=1)
    drift.set(ylabel="inputs drifted (share)", ylim=(0, 1))
    drift.set_xticks(positions, periods)
    return save_figure(fig, name)


def _unshifted(shift: ReplayShift) -> float | None:
    """The expected input's drift in the shifted period in the last plain replay, if any."""
    from bench.report import load

    plain = load("replay")
    rows = [r for r in (plain or {}).get("timeline", []) if r["period"] == shift.period]
    return rows[0].get("drift", {}).get(shift.expect) if rows else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shift", action="store_true", help="inject replay.shift first")
    parser.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = parser.parse_args(argv)
    name = "replay_shift" if args.shift else "replay"
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    base = load_settings("local").with_overrides(workspace_overrides(folder))
    shift = base.replay.shift if args.shift else None
    if args.shift and shift is None:
        print(f"use case {base.usecase} sets no replay.shift", file=sys.stderr)
        return 2
    try:
        timeline = replay(base, folder, shift)
    except ReplayFailed as err:
        print(f"replay failed: {err}", file=sys.stderr)
        return 1
    metric = timeline[0]["metric"] if timeline else "metric"
    print_table(
        [
            "period",
            "serving",
            "scored",
            "reference",
            "drifted",
            "drifted vs training",
            "score drift",
            f"{metric} serving",
            f"{metric} frozen",
            f"{metric} newest",
            "decision",
            "retrained",
        ],
        [
            [
                row["period"],
                f"v{row['serving']}",
                f"{row['scored']:,}",
                row["reference"].get("kind", "-"),
                f"{row['drifted_share']:.0%} ({', '.join(row['drifted'][:4])}"
                + (", ..." if len(row["drifted"]) > 4 else "")
                + ")",
                f"{row['training_reference']['drifted_share']:.0%}",
                _fmt(row["score_drift"]),
                _fmt(row["champion_live"]),
                _fmt(row["frozen_live"]),
                f"v{row['newest']} {_fmt(row['newest_live'])}",
                row["decision"],
                row["retrained"] or "",
            ]
            for row in timeline
        ],
    )
    alarms = {
        "training_reference": sum(row["training_reference"]["drift_alarm"] for row in timeline),
        "configured_reference": sum(row["drift_alarm"] for row in timeline),
        "configured": base.monitoring.drift.reference,
    }
    print(
        f"periods where drift alone would retrain: {alarms['training_reference']} against the "
        f"training rows, {alarms['configured_reference']} against the {alarms['configured']} "
        "reference"
    )
    title = f"{base.usecase}: " + (shift.what if shift else "the monitoring loop, month by month")
    print(f"plot: {plot(name, title, timeline, base)}")
    write_result(
        name,
        {
            "usecase": base.usecase,
            "shift": shift.model_dump() if shift else None,
            "drift_alarms": alarms,
            "timeline": timeline,
        },
    )
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    if shift:
        (flagged,) = [row for row in timeline if row["period"] == shift.period]
        if shift.expect not in flagged["drifted"]:
            print(
                f"FAIL: the monitor did not name {shift.expect} in {shift.period}: "
                f"{flagged['drifted']}",
                file=sys.stderr,
            )
            return 1
        value = flagged["drift"][shift.expect]
        unshifted = _unshifted(shift)
        print(
            f"the monitor flagged {shift.expect} in {shift.period} ({shift.what}): "
            f"{base.monitoring.drift.method} {value:.3f}"
            + (
                f"; without the shift {unshifted:.3f} (bench/results/replay.json)"
                if unshifted
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
