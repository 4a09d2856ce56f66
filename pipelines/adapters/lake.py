"""Spark reads of lake tables, through the drop markers, so only committed drops are seen."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from pipelines.adapters.storage import StorageLayout


def read_drops(spark: SparkSession, table_dir: str, drop_ids: list[str]) -> DataFrame | None:
    """The given committed drops of one table, with `drop_id` (and `date`) as columns."""
    if not drop_ids:
        return None
    paths = [StorageLayout.drop_dir(table_dir, drop_id) for drop_id in sorted(drop_ids)]
    return spark.read.option("basePath", table_dir).parquet(*paths)


def read_silver(
    spark: SparkSession, layout: StorageLayout, table: str, *, include_staged: bool = False
) -> DataFrame | None:
    """Published silver of `table` (plus drops staged for the gate, when asked)."""
    frames = [read_drops(spark, layout.silver(table), list(layout.drops_in(layout.silver(table))))]
    if include_staged:
        staged = layout.drops_in(layout.staging(table))
        frames.append(read_drops(spark, layout.staging(table), list(staged)))
    present = [frame for frame in frames if frame is not None]
    if not present:
        return None
    union = present[0]
    for frame in present[1:]:
        union = union.unionByName(frame)
    return union


def read_snapshot(
    spark: SparkSession, layout: StorageLayout, table: str, *, include_staged: bool = False
) -> DataFrame | None:
    """The newest drop of a reference table (snapshot drops replace each other)."""
    candidates = {
        drop_id: layout.silver(table) for drop_id in layout.drops_in(layout.silver(table))
    }
    if include_staged:
        candidates |= {
            drop_id: layout.staging(table) for drop_id in layout.drops_in(layout.staging(table))
        }
    if not candidates:
        return None
    newest = max(candidates)
    return read_drops(spark, candidates[newest], [newest])
