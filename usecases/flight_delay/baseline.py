"""The single-machine baseline of collect + features: the platform's transforms written as one
DuckDB script, what a team might write instead of Spark.

    python -m usecases.flight_delay.baseline --landing data/landing --out bench/work/duckdb

Landing CSVs -> typed, clean silver flights and weather (same casts, the same local-to-UTC
rules, duplicates dropped per drop) -> the five feature tables, as parquet. What it does not
do, and the platform does: per-drop bookkeeping (markers, quarantine, bronze), the Great
Expectations gates and Feast registration. `bench.scale` checks its feature tables against
the platform's, row for row (a use case's `baseline.py` is where it looks).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import duckdb

from configs import Settings, load_settings
from usecases.contract import Source
from usecases.flight_delay import SOURCES
from usecases.flight_delay.features import WEATHER_FEATURES as WEATHER_MEASURES

# The baseline is the flight use case's transforms written for DuckDB.
FLIGHTS, WEATHER = (next(s for s in SOURCES if s.name == name) for name in ("flights", "weather"))

# View -> its key columns (with event_timestamp): how bench.scale lines rows up.
KEYS = {
    "aircraft_delay_history": ["tailnum", "event_timestamp"],
    "origin_weather": ["origin", "event_timestamp"],
    "carrier_on_time": ["carrier", "event_timestamp"],
    "route_on_time": ["route", "event_timestamp"],
    "plane_attributes": ["tailnum", "event_timestamp"],
}


def _typed(source: Source, folder: Path, null_token: str) -> str:
    """SQL reading every drop of `source` as text, then casting to the contract's types."""
    casts = ", ".join(
        f"TRY_CAST({name} AS {'TIMESTAMPTZ' if kind == 'timestamp' else kind.upper()}) AS {name}"
        for name, kind in source.columns.items()
    )
    return (
        f"SELECT {casts}, filename AS drop_file FROM read_csv('{folder / source.name}/*.csv', "
        f"header = true, all_varchar = true, nullstr = '{null_token}', filename = true)"
    )


def _local_to_utc(day: str, hhmm: str, zone: str, plus_days: int = 0) -> str:
    wall_clock = (
        f"(({day} + INTERVAL {plus_days} DAY)::TIMESTAMP"
        f" + to_seconds(floor({hhmm} / 100) * 3600 + ({hhmm} % 100) * 60))"
    )
    instant = f"timezone({zone}, {wall_clock})"
    # A wall-clock time in the hour clocks go back happens twice: ICU takes the second,
    # Spark (java.time) the first. Take the first, as the platform does.
    earlier = f"({instant} - INTERVAL 1 HOUR)"
    return (
        f"timezone('UTC', CASE WHEN timezone({zone}, {earlier}) = {wall_clock} "
        f"THEN {earlier} ELSE {instant} END)"
    )


def build(
    settings: Settings, landing: Path, out: Path, threads: int, layers: bool = False
) -> dict[str, int]:
    """The feature tables in `out`; with `layers`, bronze (the typed rows) and silver of the
    flights and weather are written as parquet too, as the platform keeps them: the typed
    rows go to bronze first and silver is made from bronze, as the platform's collect does."""
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = '{out / '_spill'}'")
    null = settings.collect.null_token
    extra = settings.params["extra_timezones"]
    extra_rows = ", ".join(f"('{faa}', '{zone}')" for faa, zone in sorted(extra.items()))
    con.execute(
        f"""
        CREATE TABLE tz AS
        SELECT faa, tzone FROM read_csv('{landing}/airports/*.csv', header = true,
            all_varchar = true, nullstr = '{null}')
        WHERE tzone IS NOT NULL AND faa NOT IN (SELECT faa FROM (VALUES {extra_rows}) e(faa, tzone))
        UNION ALL SELECT * FROM (VALUES {extra_rows}) e(faa, tzone)
        """
    )
    typed = {source.name: _typed(source, landing, null) for source in (FLIGHTS, WEATHER)}
    if layers:
        for name, query in typed.items():
            con.execute(f"COPY ({query}) TO '{out / f'bronze_{name}.parquet'}' (FORMAT parquet)")
            typed[name] = f"SELECT * FROM read_parquet('{out / f'bronze_{name}.parquet'}')"
    day = "make_date(year, month, day)"
    sched_dep = _local_to_utc(day, "sched_dep_time", "o.tzone")
    arr_same = _local_to_utc(day, "sched_arr_time", "d.tzone")
    arr_next = _local_to_utc(day, "sched_arr_time", "d.tzone", 1)
    con.execute(
        f"""
        CREATE TABLE flights AS
        WITH typed AS ({typed["flights"]}),
        placed AS (
            SELECT f.*, {sched_dep} AS sched_dep_utc, {arr_same} AS arr_same, {arr_next} AS arr_next
            FROM typed f LEFT JOIN tz o ON f.origin = o.faa LEFT JOIN tz d ON f.dest = d.faa
        ),
        silver AS (
            SELECT DISTINCT
                concat_ws('-', carrier, flight, strftime(sched_dep_utc, '%Y%m%dT%H%MZ')) AS flight_id,
                {day} AS flight_date, carrier, flight, tailnum, origin, dest, distance,
                floor(sched_dep_time / 100)::INT AS sched_dep_local_hour, sched_dep_utc,
                CASE WHEN arr_same > sched_dep_utc THEN arr_same ELSE arr_next END AS sched_arr_utc,
                dep_delay, arr_delay, air_time, dep_delay IS NULL AS cancelled,
                dep_delay IS NOT NULL AND arr_delay IS NULL AS diverted, time_hour, drop_file
            FROM placed
        )
        SELECT * EXCLUDE (drop_file),
            sched_dep_utc + to_minutes(trunc(dep_delay)::BIGINT) AS dep_utc,
            sched_arr_utc + to_minutes(trunc(arr_delay)::BIGINT) AS arr_utc
        FROM silver
        """
    )
    measures = ", ".join(WEATHER_MEASURES)
    con.execute(
        f"""
        CREATE TABLE weather AS
        SELECT DISTINCT origin, timezone('UTC', time_hour) AS time_hour, {measures}, drop_file
        FROM ({typed["weather"]})
        """
    )
    if layers:
        for name in typed:
            con.execute(f"COPY {name} TO '{out / f'silver_{name}.parquet'}' (FORMAT parquet)")
    con.execute(
        f"""
        CREATE TABLE planes AS
        SELECT * FROM read_csv('{landing}/planes/*.csv', header = true, all_varchar = true,
            nullstr = '{null}')
        """
    )
    config = SimpleNamespace(**settings.params)
    con.execute(
        """
        CREATE VIEW arrivals AS SELECT * FROM flights
        WHERE NOT cancelled AND NOT diverted AND arr_utc IS NOT NULL AND arr_delay IS NOT NULL
        """
    )
    by_arrival = "PARTITION BY tailnum ORDER BY arr_utc, flight_id"
    tables = {
        "aircraft_delay_history": f"""
            SELECT * EXCLUDE (flight_id, _rank) FROM (
                SELECT tailnum, arr_utc AS event_timestamp, flight_id,
                    arr_delay AS tail_arr_delay_last,
                    avg(arr_delay) OVER ({by_arrival} ROWS BETWEEN
                        {config.aircraft_recent_arrivals - 1} PRECEDING AND CURRENT ROW)
                        AS tail_arr_delay_mean_recent,
                    avg(CASE WHEN arr_delay > {config.late_minutes} THEN 1.0 ELSE 0.0 END)
                        OVER ({by_arrival} ROWS BETWEEN
                        {config.aircraft_late_rate_arrivals - 1} PRECEDING AND CURRENT ROW)
                        AS tail_late_rate_recent,
                    count(*) OVER (PARTITION BY tailnum ORDER BY epoch(arr_utc)::BIGINT
                        RANGE BETWEEN {24 * 3600 - 1} PRECEDING AND CURRENT ROW)
                        AS tail_arrivals_last_24h,
                    row_number() OVER (PARTITION BY tailnum, arr_utc ORDER BY flight_id DESC)
                        AS _rank
                FROM arrivals WHERE tailnum IS NOT NULL
            ) WHERE _rank = 1
        """,
        "origin_weather": f"""
            SELECT c.origin, c.time_hour AS event_timestamp,
                {", ".join(f"c.{m} AS weather_{m}" for m in WEATHER_MEASURES)},
                {", ".join(f"p.{m} AS weather_prev_{m}" for m in WEATHER_MEASURES)}
            FROM weather c LEFT JOIN weather p
                ON c.origin = p.origin AND c.time_hour = p.time_hour + INTERVAL 1 HOUR
        """,
        "carrier_on_time": _rolling(
            "carrier", "carrier", config.carrier_window_days, config.late_minutes
        ),
        "route_on_time": _rolling(
            "route", "concat_ws('-', origin, dest)", config.route_window_days, config.late_minutes
        ),
        "plane_attributes": f"""
            SELECT tailnum, TIMESTAMP '{settings.land.snapshot_id}-01-01 00:00:00' AS event_timestamp,
                TRY_CAST(year AS BIGINT) AS plane_year, TRY_CAST(seats AS BIGINT) AS plane_seats,
                TRY_CAST(engines AS BIGINT) AS plane_engines
            FROM planes
        """,
    }
    rows = {}
    for view, query in tables.items():
        target = out / f"{view}.parquet"
        con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
        rows[view] = con.execute(f"SELECT count(*) FROM '{target}'").fetchone()[0]  # type: ignore[index]
    return rows


def _rolling(key: str, expression: str, days: int, late_minutes: float) -> str:
    return f"""
        WITH daily AS (
            SELECT {expression} AS {key}, arr_utc::DATE AS day, count(*) AS arrivals,
                sum(CASE WHEN arr_delay <= {late_minutes} THEN 1 ELSE 0 END) AS on_time
            FROM arrivals GROUP BY ALL
        )
        SELECT {key}, (day + INTERVAL 1 DAY)::TIMESTAMP AS event_timestamp,
            sum(on_time) OVER w / sum(arrivals) OVER w AS {key}_on_time_rate,
            (sum(arrivals) OVER w)::BIGINT AS {key}_arrivals
        FROM daily
        WINDOW w AS (PARTITION BY {key} ORDER BY day - DATE '1970-01-01'
            RANGE BETWEEN {days - 1} PRECEDING AND CURRENT ROW)
    """


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also write bronze and silver of the flights and weather as parquet, as the "
        "platform does (a like-for-like figure; bench.scale's baseline runs without)",
    )
    args = parser.parse_args()
    rows = build(
        load_settings(), args.landing.resolve(), args.out.resolve(), args.threads, args.layers
    )
    for view, count in rows.items():
        print(f"{view}: {count} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
