"""Validate: the Great Expectations gate between staged and published silver.

Write, audit, publish: collect stages new drops; this stage checks each staged drop against its
table's suite and publishes the drops that pass. Row rules hold for each drop on its own;
uniqueness looks at published silver too (a key already published, or in an earlier drop, is
taken). A drop that fails is quarantined with the failed expectations as the reason; the others
still go through. Published silver is only ever data that passed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from configs.settings import TableQuality
from pipelines import data_docs
from pipelines.adapters.lake import read_drops, read_silver
from pipelines.adapters.quality import FailedExpectation, GateResult, QualityGate
from pipelines.adapters.storage import (
    SILVER,
    USECASE_DIGEST,
    DropMarker,
    LandedDrop,
    StorageLayout,
)
from pipelines.context import StageContext
from pipelines.results import StageResult
from storage import files as fs

log = logging.getLogger(__name__)

_UNIQUE = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def run(ctx: StageContext) -> StageResult:
    settings, spark_session = ctx.settings, ctx.spark
    result = StageResult("validate")
    layout = StorageLayout(settings.paths)
    result.outputs |= {
        "silver": layout.zone(SILVER),
        "validation results": QualityGate.results_dir_for(layout.reports),
        "data docs": data_docs.index_of(layout.reports),
    }
    # Every source's staged drops: a source without rules in `quality.tables` passes an
    # empty suite (the use case's check refuses rules for a table that is not declared).
    tables = [source.name for source in ctx.usecase.sources]
    pending = {table: layout.drops_in(layout.staging(table)) for table in tables}
    pending = {table: drops for table, drops in pending.items() if drops}
    if not pending:
        result.notes.append("nothing new to validate: published silver is unchanged")
        return result
    spark = spark_session()
    gate = QualityGate(layout.reports)
    now = datetime.now(UTC)
    run_label = now.strftime("%Y%m%dT%H%M%SZ")
    for table, staged in pending.items():
        log.info("validate %s: %d staged drop(s)", table, len(staged))
        failures, result_files = _check(
            spark,
            gate,
            layout,
            table,
            settings.quality.tables.get(table, TableQuality()),
            sorted(staged),
            run_label,
        )
        passed = [drop_id for drop_id in sorted(staged) if drop_id not in failures]
        published = []
        for drop_id in passed:
            problem = _publish(layout, table, staged[drop_id], result_files)
            if problem:
                result.fail(problem)
            else:
                published.append(drop_id)
        # What is in place now, not what was attempted.
        rows_published = _rows(staged, published)
        result.rows_in += _rows(staged, list(staged))
        result.rows_out += rows_published
        if published:
            result.notes.append(
                f"{table}: {len(published)} drop(s) passed and published ({rows_published:,} rows)"
            )
        for drop_id, found in sorted(failures.items()):
            reasons = [str(failure) for failure in found]
            _quarantine_staged(
                layout,
                table,
                drop_id,
                staged[drop_id].content_hash,
                {"reasons": reasons, USECASE_DIGEST: ctx.project.digest},
                now,
            )
            result.fail(
                f"{table}/{drop_id} failed the quality gate and was quarantined:\n    - "
                + "\n    - ".join(reasons)
            )
    data_docs.publish(layout.reports, ctx.usecase.name)
    return result


def _check(
    spark: SparkSession,
    gate: QualityGate,
    layout: StorageLayout,
    table: str,
    quality: TableQuality,
    staged: list[str],
    run_label: str,
) -> tuple[dict[str, list[FailedExpectation]], list[str]]:
    """The staged drops that fail the suite, with what they broke; the gate's result files.

    A key is taken by an earlier staged drop only while that drop stands: when drops failed
    for other reasons, the drops that failed on uniqueness alone are checked again without them.
    """
    published = read_silver(spark, layout, table)

    def attempt(drop_ids: list[str], number: int) -> GateResult:
        frame = read_drops(spark, layout.staging(table), drop_ids)
        assert frame is not None
        return gate.check(table, frame, quality, run_label, published=published, attempt=number)

    first = attempt(staged, 1)
    failures = dict(first.failures)
    refused = {d for d, found in failures.items() if not _only_uniqueness(found)}
    suspects = sorted(d for d in failures if d not in refused)
    if not (refused and suspects):
        return failures, first.result_files
    again = attempt(sorted(set(staged) - refused), 2)
    for drop_id in suspects:
        failures.pop(drop_id)
        if drop_id in again.failures:
            failures[drop_id] = again.failures[drop_id]
    return failures, first.result_files + again.result_files


def _only_uniqueness(failures: list[FailedExpectation]) -> bool:
    return all(failure.expectation in _UNIQUE for failure in failures)


def _rows(staged: dict[str, DropMarker], drop_ids: list[str]) -> int:
    return sum(staged[drop_id].rows_out for drop_id in drop_ids)


def _publish(
    layout: StorageLayout, table: str, judged: DropMarker, result_files: list[str]
) -> str | None:
    """Move a staged drop into silver, with a record of the gate results that let it in, and
    check what arrived: its marker, its data, the rows the gate judged. None when it is in
    place; otherwise the problem, with the drop back in staging for the next run."""
    drop_id = judged.drop_id
    staged = StorageLayout.drop_dir(layout.staging(table), drop_id)
    target = StorageLayout.drop_dir(layout.silver(table), drop_id)
    if StorageLayout.marker(staged) != judged:
        return (
            f"{table}/{drop_id}: its staged copy changed or went away after the gate judged it "
            "(another run on this workspace?): not published; the next run collects it again"
        )
    results = [fs.name(path) for path in result_files]
    fs.write_text(StorageLayout.gate_record(staged), json.dumps({"results": results}, indent=2))
    layout.publish(staged, target)
    missing = StorageLayout.missing_from(target, judged.rows_out)
    if missing is None:
        return None
    layout.publish(target, staged)
    return f"{table}/{drop_id}: published, but {missing}: put back in staging for the next run"


def _quarantine_staged(
    layout: StorageLayout,
    table: str,
    drop_id: str,
    digest: str,
    judged: dict[str, object],
    now: datetime,
) -> None:
    """Record the refusal (`judged`: the reasons and the use case's digest) beside the landing
    file's copy, then drop the staged data."""
    landed = LandedDrop(table, drop_id, layout.landing_file(table, drop_id))
    reason = {
        "table": table,
        "drop_id": drop_id,
        "content_hash": digest,
        "stage": "validate",
        **judged,
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
