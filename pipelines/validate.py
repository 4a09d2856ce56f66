"""Validate: the Great Expectations gate between staged and published silver.

Write, audit, publish: collect stages new drops; this stage validates each table's published
silver together with its staged drops, and publishes the staged drops only if the suite
passes. When it fails, each staged drop is tried on its own so that good drops still go
through; the ones that fail are quarantined with the failed expectations as the reason.
Published silver is only ever data that passed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pandas as pd
from pyspark.sql import DataFrame

from configs.settings import TableQuality
from pipelines.adapters.lake import read_drops, read_silver
from pipelines.adapters.quality import (
    GateResult,
    QualityGate,
    drop_count_expectations,
    row_expectations,
)
from pipelines.adapters.storage import LandedDrop, StorageLayout
from pipelines.context import StageContext
from pipelines.results import StageResult
from storage import files as fs

log = logging.getLogger(__name__)


def drop_counts(frame: DataFrame) -> pd.DataFrame:
    """Rows per drop, as a small pandas frame for the per-drop suite."""
    return frame.groupBy("drop_id").count().withColumnRenamed("count", "rows").toPandas()


class _TableGate:
    def __init__(self, gate: QualityGate, table: str, rules: TableQuality, run_label: str) -> None:
        self.gate, self.table, self.rules, self.run_label = gate, table, rules, run_label
        self.attempt = 0

    def check(self, frame: DataFrame, staged_only: DataFrame) -> list[GateResult]:
        """Row suite on `frame`; per-drop counts suite on the staged drops."""
        self.attempt += 1
        label = f"{self.run_label}_{self.attempt}"
        results = [self.gate.validate(self.table, frame, row_expectations(self.rules), label)]
        count_rules = drop_count_expectations(self.rules)
        if count_rules:
            results.append(
                self.gate.validate(
                    f"{self.table}_rows_per_drop", drop_counts(staged_only), count_rules, label
                )
            )
        return results


def run(ctx: StageContext) -> StageResult:
    settings, spark_session = ctx.settings, ctx.spark
    result = StageResult("validate")
    layout = StorageLayout(settings.paths)
    result.outputs |= {
        "silver": fs.join(layout.lake, "silver"),
        "validation results": QualityGate.results_dir_for(layout.reports),
        "data docs": fs.join(QualityGate.docs_dir_for(layout.reports), "index.html"),
    }
    pending = {table: layout.drops_in(layout.staging(table)) for table in settings.quality.tables}
    pending = {table: drops for table, drops in pending.items() if drops}
    if not pending:
        result.notes.append("nothing new to validate: published silver is unchanged")
        return result
    spark = spark_session()
    gate = QualityGate(layout.reports)
    now = datetime.now(UTC)
    run_label = now.strftime("%Y%m%dT%H%M%SZ")
    for table, staged in pending.items():
        table_gate = _TableGate(gate, table, settings.quality.tables[table], run_label)
        published = read_silver(spark, layout, table)
        staged_frame = read_drops(spark, layout.staging(table), list(staged))
        assert staged_frame is not None
        union = staged_frame if published is None else published.unionByName(staged_frame)
        log.info("validate %s: %d staged drop(s)", table, len(staged))
        outcomes = table_gate.check(union, staged_frame)
        if all(outcome.success for outcome in outcomes):
            for drop_id in sorted(staged):
                _publish(layout, table, drop_id, outcomes)
            rows = sum(marker.rows_out for marker in staged.values())
            result.rows_in += rows
            result.rows_out += rows
            result.notes.append(
                f"{table}: {len(staged)} drop(s) passed and published ({rows:,} rows)"
            )
            continue
        # The batch failed: find which drops are to blame, publish the others.
        for drop_id in sorted(staged):
            published = read_silver(spark, layout, table)
            one = read_drops(spark, layout.staging(table), [drop_id])
            assert one is not None
            frame = one if published is None else published.unionByName(one)
            outcomes = table_gate.check(frame, one)
            result.rows_in += staged[drop_id].rows_out
            if all(outcome.success for outcome in outcomes):
                _publish(layout, table, drop_id, outcomes)
                result.rows_out += staged[drop_id].rows_out
                result.notes.append(f"{table}/{drop_id}: passed and published")
                continue
            failures = [str(failure) for outcome in outcomes for failure in outcome.failures]
            _quarantine_staged(layout, table, drop_id, staged[drop_id].content_hash, failures, now)
            result.fail(
                f"{table}/{drop_id} failed the quality gate and was quarantined:\n    - "
                + "\n    - ".join(failures)
            )
    return result


def _publish(layout: StorageLayout, table: str, drop_id: str, outcomes: list[GateResult]) -> None:
    """Move a staged drop into silver, with a record of the gate results that let it in."""
    staged = StorageLayout.drop_dir(layout.staging(table), drop_id)
    results = [fs.name(path) for outcome in outcomes for path in outcome.result_files]
    fs.write_text(fs.join(staged, "_gate.json"), json.dumps({"results": results}, indent=2))
    layout.publish(staged, StorageLayout.drop_dir(layout.silver(table), drop_id))


def _quarantine_staged(
    layout: StorageLayout, table: str, drop_id: str, digest: str, failures: list[str], now: datetime
) -> None:
    """Record the refusal beside the landing file's copy, then drop the staged data."""
    landed = LandedDrop(table, drop_id, layout.landing_file(table, drop_id))
    reason = {
        "table": table,
        "drop_id": drop_id,
        "content_hash": digest,
        "stage": "validate",
        "reasons": failures,
        "quarantined_at": now.isoformat(),
        "source_file": landed.path,
    }
    if fs.is_file(landed.path):
        layout.quarantine(landed, digest, reason)
    # Renamed aside first (locally atomic), so a crash never leaves half a staged drop.
    staged_dir = StorageLayout.drop_dir(layout.staging(table), drop_id)
    trash = fs.join(fs.parent(staged_dir), f"_trash-{drop_id}")
    fs.move(staged_dir, trash)
    fs.delete_tree(trash)
