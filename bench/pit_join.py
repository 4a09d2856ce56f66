"""The point-in-time training set: Feast's historical retrieval against a hand-written DuckDB
ASOF JOIN on the same feature tables and the same examples, outputs checked identical.

    .venv/bin/python -m bench.pit_join --repeats 3      # after `make train`

The configured use case's examples (every labelled row of silver: what `fit` trains on), each
engine in its own process (peak memory is its own). The time is the join alone: from the
entity frame in memory to the joined frame in memory. The DuckDB query gives each example,
per feature view, the newest row at or before its moment of prediction and no older than the
view's TTL (zero: no limit): Feast's documented point-in-time rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import (
    WORK,
    bar_chart,
    feature_views,
    measure,
    median,
    print_table,
    python,
    silver_examples,
    usecase_of,
    write_result,
)

OUT = WORK / "pit"
# feast: the platform's configured offline store; feast-duckdb-stock: Feast's own DuckDB store
# (its range join), for comparison; duckdb: the hand-written ASOF JOIN baseline.
ENGINES = ("feast", "feast-duckdb-stock", "duckdb")


def entities(settings: Any) -> pd.DataFrame:
    """The labelled examples as entity rows: row id, every view's join key, the moment."""
    from usecases.contract import EVENT_TIMESTAMP

    usecase = usecase_of(settings)
    frame = usecase.examples.labelled(silver_examples(settings, usecase), settings.params)
    keys = sorted({view.join_key for view in feature_views(usecase).values()})
    return frame[[usecase.examples.row_id, *keys, EVENT_TIMESTAMP]]


def feast_join(settings: Any, frame: pd.DataFrame, stock: bool = False) -> pd.DataFrame:
    from features.definitions import build_repo
    from features.store import feature_store

    if stock:  # Feast's own DuckDB store (ibis), instead of the platform's configured one
        settings = settings.with_overrides({"features": {"offline_store": {"type": "duckdb"}}})
    store = feature_store(settings)
    service = store.get_feature_service(build_repo(settings).service.name)
    return store.get_historical_features(entity_df=frame, features=service).to_df()


def duckdb_join(settings: Any, frame: pd.DataFrame) -> pd.DataFrame:
    import duckdb

    from features.definitions import feature_table_path

    views = feature_views(usecase_of(settings))

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    con.register("entities", frame)
    selects, joins = ["e.*"], []
    for index, (view, (key, ttl, fields)) in enumerate(views.items()):
        alias = f"v{index}"
        names = [name for name, _, _ in fields]
        path = feature_table_path(settings, view)
        joins.append(
            f"ASOF LEFT JOIN (SELECT {key}, event_timestamp AS _ts, {', '.join(names)} "
            f"FROM read_parquet('{path}')) {alias} "
            f"ON e.{key} = {alias}.{key} AND e.event_timestamp >= {alias}._ts"
        )
        seconds = int(ttl.total_seconds())
        for name in names:
            if seconds:
                fresh = f"e.event_timestamp - {alias}._ts <= INTERVAL {seconds} SECOND"
                selects.append(f"CASE WHEN {fresh} THEN {alias}.{name} END AS {name}")
            else:
                selects.append(f"{alias}.{name}")
    query = f"SELECT {', '.join(selects)} FROM entities e {' '.join(joins)}"
    return con.execute(query).df()


def worker(engine: str, out: Path) -> None:
    from configs import load_settings

    settings = load_settings()
    frame = entities(settings)
    started = time.perf_counter()
    if engine == "duckdb":
        joined = duckdb_join(settings, frame)
    else:
        joined = feast_join(settings, frame, stock=engine == "feast-duckdb-stock")
    seconds = time.perf_counter() - started
    joined.to_parquet(out / f"{engine}.parquet", index=False)
    print(json.dumps({"engine": engine, "join_seconds": seconds, "rows": len(joined)}))


def compare(out: Path, engine: str) -> dict[str, Any]:
    """Feature values per example of `engine` against the DuckDB baseline: equal, or both missing."""
    from configs import load_settings

    usecase = usecase_of(load_settings())
    names, row_id = usecase.stored_features, usecase.examples.row_id
    feast = pd.read_parquet(out / f"{engine}.parquet").set_index(row_id).sort_index()
    duck = pd.read_parquet(out / "duckdb.parquet").set_index(row_id).sort_index()
    same_rows = feast.index.equals(duck.index)
    mismatched = {}
    if same_rows:
        for name in names:
            left = pd.to_numeric(feast[name], errors="coerce").to_numpy("float64")
            right = pd.to_numeric(duck[name], errors="coerce").to_numpy("float64")
            equal = np.isclose(left, right, rtol=0, atol=1e-9) | (np.isnan(left) & np.isnan(right))
            if (~equal).sum():
                mismatched[name] = int((~equal).sum())
    return {
        "rows_feast": len(feast),
        "rows_duckdb": len(duck),
        "same_examples": bool(same_rows),
        "mismatched_values": mismatched,
        "identical": bool(same_rows and not mismatched),
        "values_compared": len(feast) * len(names),
    }


def plot(summary: dict[str, dict[str, Any]]) -> None:
    engines = list(summary)
    bar_chart(
        "pit_join",
        "Point-in-time training set",
        "seconds (join) / GiB (process peak)",
        ["join time (s)", "peak memory (GiB)"],
        {e: [summary[e]["seconds"], summary[e]["peak_gib"]] for e in engines},
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args.worker, OUT)
        return 0
    runs: dict[str, list[dict[str, float]]] = {engine: [] for engine in ENGINES}
    for _ in range(args.repeats):
        for engine in runs:  # alternating, so drift of the machine hits both alike
            run = measure(python("-m", "bench.pit_join", "--worker", engine))
            figures = json.loads(run.output.strip().splitlines()[-1])
            runs[engine].append(
                {
                    "seconds": figures["join_seconds"],
                    "peak_gib": run.peak_gib,
                    "rows": figures["rows"],
                }
            )
            print(f"  {engine}: join {figures['join_seconds']:.2f} s, peak {run.peak_gib:.2f} GiB")
    checks = {engine: compare(OUT, engine) for engine in ENGINES if engine != "duckdb"}
    check = checks["feast"]
    summary: dict[str, dict[str, Any]] = {
        engine: {
            "seconds": median([r["seconds"] for r in results]),
            "peak_gib": median([r["peak_gib"] for r in results]),
            "runs": results,
        }
        for engine, results in runs.items()
    }
    ratios = {
        engine: {
            "time": summary[engine]["seconds"] / summary["duckdb"]["seconds"],
            "memory": summary[engine]["peak_gib"] / summary["duckdb"]["peak_gib"],
        }
        for engine in checks
    }
    write_result(
        "pit_join",
        {
            "repeats": args.repeats,
            "entities": check["rows_feast"],
            "results": summary,
            "ratios": ratios["feast"],
            "check": check,
            "ratios_by_engine": ratios,
            "checks_by_engine": checks,
        },
    )
    plot(summary)
    print_table(
        ["engine", "join s", "peak GiB (process)"],
        [[name, s["seconds"], s["peak_gib"]] for name, s in summary.items()],
    )
    for engine, ratio in ratios.items():
        same = checks[engine]
        print(
            f"{engine} / DuckDB: time {ratio['time']:.2f}x, memory {ratio['memory']:.2f}x;"
            f" identical: {same['identical']} ({same['values_compared']:,} values compared)"
        )
        if not same["identical"]:
            print(json.dumps(same, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
