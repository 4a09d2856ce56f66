"""The Feast repository as code: entities, sources, feature views and the model's FeatureService.

Built from settings (sources point at the lake's feature tables), so the same definitions serve
every environment. Feature names are unique across views, so no prefixes are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, PrimitiveFeastType, String
from feast.value_type import ValueType

from configs import Settings
from features.names import EVENT_TIMESTAMP, WEATHER_MEASURES

aircraft = Entity(
    name="aircraft",
    join_keys=["tailnum"],
    value_type=ValueType.STRING,
    description="A plane, by tail number",
)
origin_airport = Entity(
    name="origin_airport",
    join_keys=["origin"],
    value_type=ValueType.STRING,
    description="A departure airport (FAA code)",
)
carrier = Entity(
    name="carrier",
    join_keys=["carrier"],
    value_type=ValueType.STRING,
    description="An airline (IATA code)",
)
route = Entity(
    name="route",
    join_keys=["route"],
    value_type=ValueType.STRING,
    description="An origin-destination pair, e.g. JFK-LAX",
)

WEATHER_WORDS = {
    "temp": "temperature",
    "wind_speed": "wind speed",
    "precip": "rain or snow",
    "visib": "visibility",
}

# name -> (entity, time to live, [(feature, type, what it means in plain words)])
VIEWS: dict[str, tuple[Entity, timedelta, list[tuple[str, PrimitiveFeastType, str]]]] = {
    "aircraft_delay_history": (
        aircraft,
        timedelta(days=14),
        [
            ("tail_arr_delay_last", Float64, "how late this plane arrived on its last flight"),
            (
                "tail_arr_delay_mean_recent",
                Float64,
                "this plane's average arrival delay over its last few flights",
            ),
            (
                "tail_late_rate_recent",
                Float64,
                "share of this plane's recent flights that arrived late",
            ),
            (
                "tail_arrivals_last_24h",
                Int64,
                "how many flights this plane completed in the last 24 hours",
            ),
        ],
    ),
    "origin_weather": (
        origin_airport,
        timedelta(hours=2),
        [
            (
                f"weather_{m}",
                Float64,
                f"{WEATHER_WORDS[m]} at the departure airport at the scheduled hour",
            )
            for m in WEATHER_MEASURES
        ]
        + [
            (
                f"weather_prev_{m}",
                Float64,
                f"{WEATHER_WORDS[m]} at the departure airport an hour earlier",
            )
            for m in WEATHER_MEASURES
        ],
    ),
    "carrier_on_time": (
        carrier,
        timedelta(days=3),
        [
            ("carrier_on_time_rate", Float64, "the airline's on-time share over the past week"),
            ("carrier_arrivals", Int64, "the airline's number of flights over the past week"),
        ],
    ),
    "route_on_time": (
        route,
        timedelta(days=30),
        [
            ("route_on_time_rate", Float64, "the route's on-time share over the past four weeks"),
            ("route_arrivals", Int64, "the route's number of flights over the past four weeks"),
        ],
    ),
    # Static attributes: no expiry (a TTL of zero means "forever" in Feast).
    "plane_attributes": (
        aircraft,
        timedelta(0),
        [
            ("plane_year", Int64, "the year the plane was built"),
            ("plane_seats", Int64, "the plane's number of seats"),
            ("plane_engines", Int64, "the plane's number of engines"),
        ],
    ),
}


def feature_table_path(settings: Settings, view: str) -> str:
    """Where the features stage writes a view's table (one parquet file, replaced atomically):
    a local path or an s3:// URI, as the lake is."""
    return f"{settings.paths.lake.rstrip('/')}/features/{view}.parquet"


@dataclass(frozen=True)
class FeatureRepo:
    entities: list[Entity]
    views: list[FeatureView]
    service: FeatureService

    @property
    def objects(self) -> list[Any]:
        """Everything `FeatureStore.apply` registers."""
        return [*self.entities, *self.views, self.service]

    @property
    def feature_names(self) -> list[str]:
        return declared_feature_names()


def declared_feature_names() -> list[str]:
    """The service's features, in the order declared in VIEWS.

    Not read back from the Feast objects: Feast does not keep the declared order of a view's
    fields (it varies between processes), and a model's column order must not.
    """
    return [feature for _, _, fields in VIEWS.values() for feature, _, _ in fields]


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
    views: list[Any] = []  # FeatureService wants its own union type
    for name, (entity, ttl, fields) in VIEWS.items():
        source = _source(settings, name)
        schema = [Field(name=entity.join_key, dtype=String)]
        schema += [
            Field(name=feature, dtype=dtype, description=text) for feature, dtype, text in fields
        ]
        views.append(
            FeatureView(
                name=name, entities=[entity], ttl=ttl, schema=schema, source=source, online=True
            )
        )
    service = FeatureService(
        name=service_name(settings),
        features=views,
        tags={"version": str(settings.features.service_version)},
        description="The features of the flight-delay model",
    )
    entities = list({entity.name: entity for entity, _, _ in VIEWS.values()}.values())
    return FeatureRepo(entities=entities, views=views, service=service)


def describe(feature: str) -> str:
    """A feature in plain words, for reports."""
    from features.request import REQUEST_DESCRIPTIONS

    for _, _, fields in VIEWS.values():
        for name, _, text in fields:
            if name == feature:
                return text
    return REQUEST_DESCRIPTIONS.get(feature, feature)


def service_name(settings: Settings) -> str:
    """The FeatureService's name carries its version: a changed feature set gets a new name."""
    return f"{settings.features.service_name}_v{settings.features.service_version}"
