"""The Feast repository as code, built from the use case's declared entities and views.

Built from settings (sources point at the lake's feature tables), so the same definitions serve
every environment. Feature names are unique across views (the contract checks it), so no
prefixes are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

from configs import Settings
from usecases import load as load_usecase
from usecases.contract import EVENT_TIMESTAMP, UseCase

_TYPES = {"float": Float64, "int": Int64}


def feature_table_path(settings: Settings, view: str) -> str:
    """Where the features stage writes a view's table (one parquet file, replaced atomically):
    a local path or an s3:// URI, as the lake is."""
    return f"{settings.paths.lake.rstrip('/')}/features/{view}.parquet"


@dataclass(frozen=True)
class FeatureRepo:
    entities: list[Entity]
    views: list[FeatureView]
    service: FeatureService
    usecase: UseCase

    @property
    def objects(self) -> list[Any]:
        """Everything `FeatureStore.apply` registers."""
        return [*self.entities, *self.views, self.service]

    @property
    def feature_names(self) -> list[str]:
        """In declared order: Feast does not keep the order of a view's fields (it varies
        between processes), and a model's column order must not."""
        return self.usecase.stored_features


def _source(settings: Settings, view: str) -> Any:
    """The view's batch source: a parquet file, read by the configured offline store.

    Feast's Spark offline store (the aws profile, on EMR) only reads SparkSources; the others
    read FileSources. Both point at the same file.
    """
    path = feature_table_path(settings, view)
    if settings.features.offline_store.get("type") == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(
            name=f"{view}_source", path=path, file_format="parquet", timestamp_field=EVENT_TIMESTAMP
        )
    return FileSource(
        name=f"{view}_source",
        path=path,
        timestamp_field=EVENT_TIMESTAMP,
        file_format=ParquetFormat(),
    )


def build_repo(settings: Settings) -> FeatureRepo:
    usecase = load_usecase(settings.usecase)
    entities = {
        declared.name: Entity(
            name=declared.name,
            join_keys=[declared.join_key],
            value_type=ValueType.STRING,
            description=declared.description,
        )
        for declared in usecase.entities
    }
    views: list[Any] = []  # FeatureService wants its own union type
    for declared in usecase.views:
        entity = entities[declared.entity]
        schema = [Field(name=entity.join_key, dtype=String)]
        schema += [
            Field(name=f.name, dtype=_TYPES[f.dtype], description=f.description)
            for f in declared.features
        ]
        views.append(
            FeatureView(
                name=declared.name,
                entities=[entity],
                ttl=declared.ttl,
                schema=schema,
                source=_source(settings, declared.name),
                online=True,
            )
        )
    service = FeatureService(
        name=service_name(settings),
        features=views,
        tags={"version": str(settings.features.service_version)},
        description=usecase.description,
    )
    used = {declared.entity for declared in usecase.views}
    return FeatureRepo(
        entities=[entities[name] for name in entities if name in used],
        views=views,
        service=service,
        usecase=usecase,
    )


def service_name(settings: Settings) -> str:
    """The FeatureService's name carries its version: a changed feature set gets a new name."""
    return settings.names.feature_service(settings.features.service_version)
