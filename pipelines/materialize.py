"""Materialize: load the latest feature values the champion needs into the online store.

Incremental: each view continues from where its last materialization ended. The end is the
newest event in the feature tables (the data's own clock), never the wall clock, so a
historical data set such as 2013 materializes the same way every time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs import Settings
from features.definitions import build_repo, feature_table_path
from features.store import feature_store, materialize_incrementally
from models.tracking import Tracker
from pipelines.context import StageContext
from pipelines.results import StageResult
from storage import files as fs
from usecases.contract import EVENT_TIMESTAMP


def event_range(settings: Settings, view: str) -> tuple[datetime, datetime]:
    filesystem, path = fs.resolve(feature_table_path(settings, view))
    column = pq.read_table(path, columns=[EVENT_TIMESTAMP], filesystem=filesystem)[EVENT_TIMESTAMP]
    bounds = pc.min_max(column)
    return bounds["min"].as_py(), bounds["max"].as_py()


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("materialize")
    champion = Tracker(settings).champion(ctx.handoff.champion_version)
    if champion is None:
        result.notes.append("no champion yet: nothing to serve, nothing materialized")
        return result
    views = [view.name for view in build_repo(settings).views]
    ranges = {view: event_range(settings, view) for view in views}
    end = max(high for _, high in ranges.values()) + timedelta(seconds=1)
    store = feature_store(settings)
    loaded = materialize_incrementally(store, {view: low for view, (low, _) in ranges.items()}, end)
    for view, interval in loaded.items():
        if interval is None:
            result.notes.append(f"{view}: already up to date")
        else:
            result.notes.append(
                f"{view}: {interval[0]:%Y-%m-%d %H:%M} -> {interval[1]:%Y-%m-%d %H:%M} UTC"
            )
    store_config = settings.features.online_store
    # A file path, or the back end and its first address (never the options: they may hold a password).
    result.outputs["online store"] = str(
        store_config.get("path")
        or f"{store_config.get('type')} {str(store_config.get('connection_string', '')).split(',')[0]}"
    )
    return result
