"""Online features: Feast's `get_online_features` for the model's FeatureService against a
direct read of the same keys from the same store, for 1 and for 100 entity rows per read
(the configured use case's).

    .venv/bin/python -m bench.online_read                  # local profile: SQLite
    MLOPS_ENV=services .venv/bin/python -m bench.online_read  # Redis (after make services-up
                                                             # and ENV=services make train)

The direct read is what a team could write against the store without Feast: the same
tables (SQLite) or hashes (Redis), the same entity-key encoding (Feast's own function, so the
keys match), one query per feature view, values decoded from their protobufs. Feast adds
the registry lookup, request validation and the response's assembly. Reads alternate between
the two, in one process, after a warm-up; the values are checked equal.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    View,
    bar_chart,
    feature_views,
    newest,
    print_table,
    silver_examples,
    usecase_of,
    write_result,
)


def sample_rows(settings: Any, usecase: Any, count: int) -> list[dict[str, str]]:
    """`count` entity rows of the newest month (what the online store holds), as the join
    keys of every feature view."""
    examples = usecase.examples
    rows = examples.entity_frame(silver_examples(settings, usecase))
    keys = sorted({view.join_key for view in feature_views(usecase).values()})
    recent = newest(rows, examples.split_column, days=31).dropna(subset=keys)
    chosen = recent.sort_values(examples.row_id).sample(
        count, random_state=7, replace=len(recent) < count
    )
    return [
        {key: str(value) for key, value in zip(keys, row, strict=True)}
        for row in chosen[keys].itertuples(index=False)
    ]


class DirectSqlite:
    """The FeatureService's values read straight from Feast's SQLite tables."""

    def __init__(self, settings: Any, views: dict[str, View]) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.views = views
        self.serialize, self.entity_key, self.value = serialize_entity_key, EntityKey, Value
        self.connection = sqlite3.connect(settings.features.online_store["path"])
        self.project = settings.names.feast_project

    def key(self, join_key: str, value: str) -> bytes:
        proto = self.entity_key(join_keys=[join_key], entity_values=[self.value(string_val=value)])
        return self.serialize(proto, entity_key_serialization_version=3)

    def read(self, rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = {}
        for view, (join_key, _, fields) in self.views.items():
            keys = [self.key(join_key, row[join_key]) for row in rows]
            found: dict[bytes, dict[str, Any]] = {}
            for key, feature, blob, _ in self.connection.execute(
                f'SELECT entity_key, feature_name, value, event_ts FROM "{self.project}_{view}" '
                f"WHERE entity_key IN ({','.join('?' * len(set(keys)))})",
                list(set(keys)),
            ):
                value = self.value.FromString(blob)
                kind = value.WhichOneof("val")
                found.setdefault(key, {})[feature] = getattr(value, kind) if kind else None
            for feature, _, _ in fields:
                result[feature] = [found.get(key, {}).get(feature) for key in keys]
        return result


class DirectRedis:
    """The FeatureService's values read straight from Feast's Redis hashes (one HMGET per
    entity row and view, pipelined)."""

    def __init__(self, settings: Any, views: dict[str, View]) -> None:
        import redis
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import _mmh3, _redis_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.serialize, self.entity_key, self.value = serialize_entity_key, EntityKey, Value
        self.redis_key, self.mmh3 = _redis_key, _mmh3
        self.views = views
        host, _, port = (
            settings.features.online_store["connection_string"].split(",")[0].partition(":")
        )
        self.client = redis.Redis(host=host, port=int(port or 6379))
        self.project = settings.names.feast_project

    def read(self, rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        pipe = self.client.pipeline(transaction=False)
        plan = []
        for view, (join_key, _, fields) in self.views.items():
            names = [feature for feature, _, _ in fields]
            hashed = [self.mmh3(f"{view}:{name}") for name in names]
            for row in rows:
                proto = self.entity_key(
                    join_keys=[join_key],
                    entity_values=[self.value(string_val=row[join_key])],
                )
                pipe.hmget(self.redis_key(self.project, proto, 3), hashed)  # type: ignore[arg-type]
            plan.append((names, len(rows)))
        replies = iter(pipe.execute())
        result: dict[str, list[Any]] = {}
        for names, count in plan:
            values = [next(replies) for _ in range(count)]
            for index, name in enumerate(names):
                column: list[Any] = []
                for reply in values:
                    blob = reply[index]
                    if blob is None:
                        column.append(None)
                        continue
                    value = self.value.FromString(blob)
                    kind = value.WhichOneof("val")
                    column.append(getattr(value, kind) if kind else None)
                result[name] = column
        return result


def timed(read: Callable[[], Any]) -> float:
    started = time.perf_counter()
    read()
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def plot(kind: str, cases: dict[str, Any]) -> None:
    groups = [f"{size} row(s), {stat}" for size in cases for stat in ("p50", "p99")]
    bar_chart(
        f"online_read_{kind}",
        f"Online feature reads ({kind})",
        "ms per read",
        groups,
        {
            reader: [cases[size][reader][f"{stat}_ms"] for size in cases for stat in ("p50", "p99")]
            for reader in ("feast", "direct")
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=400, help="timed reads per case and reader")
    args = parser.parse_args()

    from configs import load_settings
    from features.definitions import service_name
    from features.store import feature_store

    settings = load_settings()
    store = feature_store(settings, online_only=True)
    service = store.get_feature_service(service_name(settings))
    kind = settings.features.online_store.get("type", "sqlite")
    usecase = usecase_of(settings)
    views = feature_views(usecase)
    direct = DirectRedis(settings, views) if kind == "redis" else DirectSqlite(settings, views)
    sampled = sample_rows(settings, usecase, 100)
    cases: dict[str, Any] = {}
    for size in (1, 100):
        rows = sampled[:size]

        def feast_read(rows: list[dict[str, str]] = rows) -> dict[str, list[Any]]:
            return store.get_online_features(features=service, entity_rows=rows).to_dict()

        def direct_read(rows: list[dict[str, str]] = rows) -> dict[str, list[Any]]:
            return direct.read(rows)

        # Same answer from both, or the comparison means nothing.
        via_feast, via_direct = feast_read(), direct_read()
        features = [f for _, _, fields in views.values() for f, _, _ in fields]
        differing = [f for f in features if via_feast[f] != via_direct[f]]
        if differing:
            raise SystemExit(f"direct read disagrees with Feast on {differing}")
        present = sum(v is not None for f in features for v in via_feast[f])
        for _ in range(20):  # warm-up
            feast_read(), direct_read()
        times: dict[str, list[float]] = {"feast": [], "direct": []}
        for _ in range(args.reads):
            times["feast"].append(timed(feast_read))
            times["direct"].append(timed(direct_read))
        cases[str(size)] = {
            reader: {
                "p50_ms": statistics.median(values),
                "p99_ms": percentile(values, 0.99),
                "mean_ms": statistics.fmean(values),
            }
            for reader, values in times.items()
        }
        cases[str(size)]["values_present"] = present
        cases[str(size)]["values_checked_equal"] = len(features) * size
        for stat in ("p50", "p99"):
            cases[str(size)][f"{stat}_ratio"] = (
                cases[str(size)]["feast"][f"{stat}_ms"] / cases[str(size)]["direct"][f"{stat}_ms"]
            )
    write_result(f"online_read_{kind}", {"store": kind, "reads": args.reads, "cases": cases})
    plot(kind, cases)
    print(f"online store: {kind}; {args.reads} reads per case and reader")
    print_table(
        [
            "rows per read",
            "Feast p50 ms",
            "Feast p99 ms",
            "direct p50 ms",
            "direct p99 ms",
            "p50 ratio",
        ],
        [
            [
                size,
                c["feast"]["p50_ms"],
                c["feast"]["p99_ms"],
                c["direct"]["p50_ms"],
                c["direct"]["p99_ms"],
                c["p50_ratio"],
            ]
            for size, c in cases.items()
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
