"""Features (Spark): silver -> the feature tables Feast serves, gated by Great Expectations,
then registered with Feast (`apply`).

Each table is written to `lake/features/<view>.parquet` under a temporary name and moved into
place only after every table passed its suite, so Feast never sees a half-built set. When the
silver it was built from has not changed, the stage does nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession

from configs import Settings
from features.definitions import build_repo, feature_table_path, service_name
from features.store import feature_store
from pipelines import data_docs
from pipelines.adapters.lake import read_silver, read_snapshot
from pipelines.adapters.quality import QualityGate
from pipelines.adapters.storage import FEATURES, StorageLayout
from pipelines.context import StageContext
from pipelines.results import StageResult
from storage import files as fs
from usecases.contract import FeatureContext, UseCase, resolve
from usecases.project import Project


def silver_state(layout: StorageLayout, usecase: UseCase) -> dict:
    """Which silver drops (and their content hashes) the features are built from."""
    tables = sorted({table for view in usecase.views for table in view.inputs})
    return {
        table: {
            drop_id: marker.content_hash
            for drop_id, marker in layout.drops_in(layout.silver(table)).items()
        }
        for table in tables
    }


def compute_tables(
    spark: SparkSession, project: Project, layout: StorageLayout
) -> dict[str, DataFrame]:
    """Each view's table, from its transform over published silver (monthly tables: every
    published drop; reference tables: the newest snapshot)."""
    settings, usecase = project.settings, project.usecase
    monthly = {source.name: source.monthly for source in usecase.sources}
    needed = sorted({table for view in usecase.views for table in view.inputs})
    frames = {
        table: (read_silver if monthly[table] else read_snapshot)(spark, layout, table)
        for table in needed
    }
    missing = [table for table, frame in frames.items() if frame is None]
    if missing:
        raise RuntimeError(
            f"no published silver for {', '.join(missing)}: run collect and validate first"
        )
    context = FeatureContext(
        silver=frames.__getitem__, params=settings.params, snapshot_id=settings.land.snapshot_id
    )
    return {view.name: resolve(view.transform)(context) for view in usecase.views}


def write_single_parquet(frame: DataFrame, staging: str) -> str:
    """Write `frame` as one parquet file inside `staging` (Feast's file sources read one file)."""
    folder = fs.join(staging, f"_tmp-{uuid.uuid4().hex[:8]}")
    frame.coalesce(1).write.mode("error").parquet(folder)
    (part,) = [name for name in fs.children(folder) if name.startswith("part-")]
    target = fs.join(staging, f"{uuid.uuid4().hex[:8]}.parquet")
    fs.move(fs.join(folder, part), target)
    fs.delete_tree(folder)
    return target


def run(ctx: StageContext) -> StageResult:
    settings, spark_session = ctx.settings, ctx.spark
    result = StageResult("features")
    layout = StorageLayout(settings.paths)
    manifest_path = layout.features_manifest
    usecase = ctx.usecase
    state = silver_state(layout, usecase)
    result.outputs["feature tables"] = layout.zone(FEATURES)
    if fs.is_file(manifest_path) and all(
        fs.is_file(feature_table_path(settings, view.name)) for view in usecase.views
    ):
        manifest = json.loads(fs.read_text(manifest_path))
        if manifest.get("silver") == state and manifest.get("service") == service_name(settings):
            result.notes.append(
                "silver unchanged since the feature tables were built: nothing to rebuild"
            )
            # Registering is idempotent and cheap; another profile's registry may not have it.
            register(settings, result)
            return result
    spark = spark_session()
    tables = compute_tables(spark, ctx.project, layout)
    gate = QualityGate(layout.reports)
    label = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staging = layout.features_staging()
    fs.make_dirs(staging)
    written: dict[str, str] = {}
    gate_results: dict[str, str] = {}
    try:
        for view, frame in tables.items():
            frame = frame.cache()
            rules = settings.quality.tables.get(view)
            if rules is not None:
                outcome = gate.check(view, frame, rules, label, by_drop=False)
                gate_results[view] = (
                    fs.name(outcome.result_files[0]) if outcome.result_files else ""
                )
                if not outcome.success:
                    for failure in outcome.all_failures():
                        result.fail(f"{view}: {failure}")
                    continue
            written[view] = write_single_parquet(frame, staging)
            rows = frame.count()
            result.rows_out += rows
            result.notes.append(f"{view}: {rows:,} rows")
            frame.unpersist()
        result.outputs["data docs"] = data_docs.publish(layout.reports, usecase.name)
        if not result.ok:
            result.problems.append(
                "feature tables failed their checks: nothing was replaced or registered"
            )
            return result
        for view, path in written.items():
            fs.move(path, feature_table_path(settings, view))  # replaces the previous table
    finally:
        fs.delete_tree(staging)
    register(settings, result)
    fs.write_text(
        manifest_path,
        json.dumps(
            {
                "silver": state,
                "service": service_name(settings),
                "gate_results": gate_results,
                "built_at": label,
            },
            indent=2,
        ),
    )
    return result


def register(settings: Settings, result: StageResult) -> None:
    """`feast apply` of the repository to the configured registry."""
    repo = build_repo(settings)
    feature_store(settings).apply(repo.objects)
    result.notes.append(
        f"registered {len(repo.views)} feature views and service {repo.service.name} with Feast"
    )
    registry = settings.features.registry
    result.outputs["feast registry"] = str(registry.get("path", registry)).split("@")[-1]
