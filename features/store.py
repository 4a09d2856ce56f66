"""The Feast store factory (the only place that builds a FeatureStore) and incremental materialization."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from feast import FeatureStore, RepoConfig

from configs import Settings

log = logging.getLogger(__name__)


# What an online-only client (the service) declares as its offline store: it never reads one,
# and loading the configured one could drag in Spark (the aws profile's offline store).
ONLINE_ONLY_OFFLINE_STORE = {"type": "duckdb"}


def feature_store(settings: Settings, *, online_only: bool = False) -> FeatureStore:
    """A FeatureStore configured from settings: registry, online and offline stores by type.

    `online_only` is for readers of the online store alone (serving).
    """
    features = settings.features
    for store in (features.registry, features.online_store):
        path = store.get("path")
        if (
            isinstance(path, str)
            and "://" not in path
            and store.get("registry_type", "file") == "file"
        ):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=settings.names.feast_project,
        provider="local",
        registry=features.registry,
        online_store=features.online_store,
        offline_store=ONLINE_ONLY_OFFLINE_STORE if online_only else features.offline_store,
        entity_key_serialization_version=3,
        repo_path=str(Path(__file__).resolve().parent),
    )
    return FeatureStore(config=config)


def materialize_incrementally(
    store: FeatureStore, view_starts: dict[str, datetime], end: datetime
) -> dict[str, tuple[datetime, datetime] | None]:
    """Load each view's rows from its last materialized point up to `end` into the online store.

    Feast's own `materialize_incremental` starts a first run at "now minus TTL", which skips
    historical data; this starts a view's first run at its earliest row (`view_starts`).
    Returns the interval loaded per view (None when it was already up to date).
    """
    loaded: dict[str, tuple[datetime, datetime] | None] = {}
    for view in store.list_feature_views():
        if view.name not in view_starts:
            continue
        ends = [interval_end for _, interval_end in view.materialization_intervals]
        start = max(ends) if ends else view_starts[view.name]
        if start >= end:
            loaded[view.name] = None
            continue
        log.info("materialize %s: %s -> %s", view.name, start.isoformat(), end.isoformat())
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        loaded[view.name] = (start, end)
    return loaded
