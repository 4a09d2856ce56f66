"""Collect + features at scale: the platform's Spark stages on 1x, 10x and 30x the configured use
case's data, against the same transforms in DuckDB (the use case's own
`usecases/<name>/baseline.py`) in the same run.

    .venv/bin/python -m bench.scale --factors 1,10,30 --repeats 1

For each scale factor the data is landed once (`land.scale_factor`, no download) into
`bench/work/scale-<N>/`; then each repeat starts from an empty lake and runs `collect`,
`validate` (the Great Expectations gate that publishes silver) and `features` (feature
tables, their gate, Feast registration) in one process, as `make train` runs them
(`python -m pipelines train --from collect --to features`: one Spark session), then the
DuckDB script in another, then the DuckDB script writing bronze and silver as the platform
does (`--layers`, the like-for-like figure). Figures per stage: its time from the chain's summary (the
process's start counted with collect), rows per second, and the peak memory of the process
tree (the JVM included). The DuckDB feature tables are checked against Spark's, row for row.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import duckdb

from bench.common import (
    WORK,
    measure,
    median,
    print_table,
    python,
    save_figure,
    stage_seconds,
    usecase_of,
    workspace_env,
    write_result,
)
from configs import load_settings
from configs.chain import SPARK_STAGES

# The DuckDB baseline that also writes bronze and silver (`baseline --layers`).
LAYERS = "duckdb_layers"


def baseline_module(usecase: str) -> str:
    """The use case's DuckDB baseline (`usecases/<name>/baseline.py`: its transforms as one
    DuckDB script, run as `python -m`, with `KEYS`: feature view -> key columns)."""
    import importlib.util

    module = f"usecases.{usecase}.baseline"
    if importlib.util.find_spec(module) is None:
        raise SystemExit(
            f"use case {usecase!r} ships no usecases/{usecase}/baseline.py: bench.scale compares "
            "the Spark stages with it"
        )
    return module


def land(folder: Path, factor: int) -> dict[str, Any]:
    """Land the scaled data once; later runs reuse it (landing is not what is measured)."""
    stamp = folder / "landed.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("scale_factor") == factor:
        return json.loads(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    env = workspace_env(folder, {"land": {"scale_factor": factor}})
    run = measure(python("-m", "pipelines", "-q", "land"), env)
    landing = folder / "data" / "landing"
    usecase = usecase_of(load_settings())
    rows = {
        source.name: sum(_data_lines(p) for p in (landing / source.name).glob("*.csv"))
        for source in usecase.sources
    }
    record = {
        "scale_factor": factor,
        "examples": rows.pop(usecase.examples.table),
        "other_rows": sum(rows.values()),
        "landing_bytes": sum(p.stat().st_size for p in landing.rglob("*.csv")),
        "land_seconds": run.seconds,
    }
    stamp.write_text(json.dumps(record, indent=2))
    return record


def _data_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle) - 1


def reset(folder: Path) -> None:
    """Everything but the landing zone: each repeat collects from scratch."""
    for part in (
        "data/lake",
        "data/quarantine",
        "data/feast",
        "reports",
        "duckdb",
        "duckdb-layers",
    ):
        shutil.rmtree(folder / part, ignore_errors=True)


def run_once(folder: Path, factor: int, baseline: str) -> dict[str, dict[str, float]]:
    env = workspace_env(folder, {"land": {"scale_factor": factor}})
    first, last = SPARK_STAGES[0], SPARK_STAGES[-1]
    run = measure(python("-m", "pipelines", "-q", "train", "--from", first, "--to", last), env)
    stages = stage_seconds(run.output)
    # The process's own start (interpreter, imports) is outside every stage's clock: it is
    # counted with the first stage, so that the stages add up to the process's wall time.
    stages[first] += run.seconds - sum(stages.values())
    steps: dict[str, dict[str, float]] = {}
    for stage in SPARK_STAGES:
        steps[stage] = {"seconds": stages[stage], "peak_gib": run.peak_gib}
        print(f"  sf {factor} {stage}: {stages[stage]:.1f} s")
    print(f"  sf {factor} Spark stages: {run.seconds:.1f} s, peak {run.peak_gib:.2f} GiB")
    landing = folder / "data" / "landing"
    # The baseline, and the same script writing bronze and silver too, as the platform does.
    for step, out, extra in (("duckdb", "duckdb", ()), (LAYERS, "duckdb-layers", ("--layers",))):
        run = measure(
            python(
                "-m",
                baseline,
                "--landing",
                str(landing),
                "--out",
                str(folder / out),
                *extra,
            ),
            env,
        )
        steps[step] = {"seconds": run.seconds, "peak_gib": run.peak_gib}
        print(f"  sf {factor} {step}: {run.seconds:.1f} s, peak {run.peak_gib:.2f} GiB")
    return steps


def compare(folder: Path, baseline: str) -> dict[str, dict[str, Any]]:
    """Rows of each feature table found in one engine's output and not the other's."""
    import importlib

    KEYS = importlib.import_module(baseline).KEYS

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    differences = {}
    for view in KEYS:
        spark = f"'{folder / 'data' / 'lake' / 'features' / f'{view}.parquet'}'"
        duck = f"'{folder / 'duckdb' / f'{view}.parquet'}'"
        columns = con.execute(f"DESCRIBE SELECT * FROM {spark}").fetchall()

        def normalized(source: str, columns: list[Any] = columns) -> str:
            parts = []
            for name, kind, *_ in columns:
                if kind.startswith("TIMESTAMP"):
                    parts.append(f"{name}::TIMESTAMPTZ AS {name}")
                elif kind in ("DOUBLE", "FLOAT"):  # summation order differs in the last bits
                    parts.append(f"round({name}, 9) AS {name}")
                else:
                    parts.append(f"{name}::{kind} AS {name}")
            return f"SELECT {', '.join(parts)} FROM {source}"

        def count(query: str) -> int:
            return int(con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0])  # type: ignore[index]

        def examples(query: str) -> list[dict[str, str]]:
            rows = con.execute(f"SELECT * FROM ({query}) ORDER BY ALL LIMIT 5")
            names = [d[0] for d in rows.description]
            return [dict(zip(names, map(str, row), strict=True)) for row in rows.fetchall()]

        only_spark = f"{normalized(spark)} EXCEPT ALL {normalized(duck)}"
        only_duck = f"{normalized(duck)} EXCEPT ALL {normalized(spark)}"
        differences[view] = {
            "rows": count(normalized(spark)),
            "only_spark": count(only_spark),
            "only_duckdb": count(only_duck),
            "examples_only_spark": examples(only_spark),
            "examples_only_duckdb": examples(only_duck),
        }
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--factors", default="1,10,30", help="comma-separated scale factors")
    parser.add_argument("--repeats", type=int, default=1, help="runs per scale factor (median)")
    parser.add_argument(
        "--keep", action="store_true", help="keep bench/work/scale-<N> (default: remove the lake)"
    )
    parser.add_argument(
        "--name", default="scale", help="results file name (bench/results/<name>.json, .png)"
    )
    args = parser.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    baseline = baseline_module(load_settings().usecase)
    results: list[dict[str, Any]] = []
    for factor in factors:
        folder = WORK / f"scale-{factor}"
        landed = land(folder, factor)
        print(f"scale factor {factor}: {landed['examples']:,} examples landed")
        runs = []
        for _ in range(args.repeats):
            reset(folder)
            runs.append(run_once(folder, factor, baseline))
        differences = compare(folder, baseline)
        steps: dict[str, dict[str, Any]] = {
            step: {
                "seconds": median([run[step]["seconds"] for run in runs]),
                "peak_gib": max(run[step]["peak_gib"] for run in runs),
                "runs_seconds": [run[step]["seconds"] for run in runs],
            }
            for step in (*SPARK_STAGES, "duckdb", LAYERS)
        }
        spark_seconds = steps["collect"]["seconds"] + steps["features"]["seconds"]
        rows = landed["examples"] + landed["other_rows"]
        results.append(
            {
                **landed,
                "repeats": args.repeats,
                "steps": steps,
                "spark_collect_features_seconds": spark_seconds,
                "spark_all_seconds": spark_seconds + steps["validate"]["seconds"],
                "spark_rows_per_second": rows / spark_seconds,
                "duckdb_rows_per_second": rows / steps["duckdb"]["seconds"],
                "spark_peak_gib": max(steps[s]["peak_gib"] for s in SPARK_STAGES),
                "features_identical": all(
                    d["only_spark"] == 0 and d["only_duckdb"] == 0 for d in differences.values()
                ),
                "differences": differences,
            }
        )
        if not args.keep:
            reset(folder)
    growth = _growth(results)
    write_result(args.name, {"factors": results, "growth": growth})
    _plot(results, args.name)
    print_table(
        [
            "scale",
            "examples",
            "collect s",
            "validate s",
            "features s",
            "duckdb s",
            "peak GiB",
            "same",
        ],
        [
            [
                r["scale_factor"],
                r["examples"],
                r["steps"]["collect"]["seconds"],
                r["steps"]["validate"]["seconds"],
                r["steps"]["features"]["seconds"],
                r["steps"]["duckdb"]["seconds"],
                r["spark_peak_gib"],
                "yes" if r["features_identical"] else "NO",
            ]
            for r in results
        ],
    )
    for label, exponent in growth.items():
        print(f"{label}: time grows as data^{exponent:.2f} (1.00 = linear)")
    return 0


def _growth(results: list[dict[str, Any]]) -> dict[str, float]:
    """Exponent k in time ~ data^k between the smallest and largest factor (1 = linear)."""
    if len(results) < 2:
        return {}
    low, high = results[0], results[-1]
    scale = math.log(high["examples"] / low["examples"])
    return {
        "spark collect+features": math.log(
            high["spark_collect_features_seconds"] / low["spark_collect_features_seconds"]
        )
        / scale,
        "spark collect+validate+features": math.log(
            high["spark_all_seconds"] / low["spark_all_seconds"]
        )
        / scale,
        "duckdb": math.log(high["steps"]["duckdb"]["seconds"] / low["steps"]["duckdb"]["seconds"])
        / scale,
    }


def _plot(results: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = [r["examples"] / 1e6 for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, key in (
        ("Spark collect", "collect"),
        ("Spark validate (GX)", "validate"),
        ("Spark features", "features"),
        ("DuckDB (collect + features)", "duckdb"),
    ):
        left.plot(examples, [r["steps"][key]["seconds"] for r in results], marker="o", label=label)
    left.set(xlabel="examples (millions)", ylabel="wall time (s)", title="Time by stage")
    left.legend()
    right.plot(examples, [r["spark_peak_gib"] for r in results], marker="o", label="Spark (max)")
    right.plot(
        examples, [r["steps"]["duckdb"]["peak_gib"] for r in results], marker="o", label="DuckDB"
    )
    right.axhline(16, color="grey", linestyle="--", label="target 16 GiB")
    right.set(xlabel="examples (millions)", ylabel="peak memory (GiB)", title="Peak memory")
    right.legend()
    save_figure(fig, name)


if __name__ == "__main__":
    raise SystemExit(main())
