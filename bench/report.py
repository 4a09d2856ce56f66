"""Write the measured figures into BENCHMARKS.md from `bench/results/*.json`.

    .venv/bin/python -m bench.report

Only the block between the `results` markers is generated (targets, tables, plots); the rest
of BENCHMARKS.md is written by hand. A benchmark that has not been run shows as "not run".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT
from bench.scale import LAYERS

DOCUMENT = ROOT / "BENCHMARKS.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
# The Spark stages' targets (issue 18): at the largest scale factor, and for `make train`.
SPARK_TO_DUCKDB_TARGET = 5.0
TRAIN_SECONDS_TARGET = 60.0


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool, detail: str) -> str:
    return f"**met** ({detail})" if met else f"**missed** ({detail})"


def targets(results: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    rows = []
    serving = results["serving_latency"]
    if serving and "sqlite" in serving["results"]:
        rows += serving_targets(serving)
    else:
        rows.append(["Serving targets", "not run"])
    # `bench.serving_latency --name serving_capacity`: the service beside the baseline at the
    # rates around their capacities (the default run's figures where it has none).
    capacity = results.get("serving_capacity") or serving
    if capacity and "capacity_against_baseline" in capacity:
        rows += capacity_targets(capacity)
    for store in ("sqlite", "redis"):
        online = results[f"online_read_{store}"]
        if online:
            worst = max(online["cases"][size]["p50_ratio"] for size in online["cases"])
            detail = ", ".join(
                f"{size} flight(s): {case['p50_ratio']:.1f}x at p50, {case['p99_ratio']:.1f}x at p99"
                for size, case in online["cases"].items()
            )
            rows.append(
                [
                    f"Feast online read <= 10x the direct read ({store})",
                    verdict(worst <= 10, detail),
                ]
            )
    pit = results["pit_join"]
    if pit:
        ratio = pit["ratios"]["time"]
        rows.append(
            [
                "Point-in-time join <= 2x the DuckDB baseline, identical output",
                verdict(
                    ratio <= 2 and pit["check"]["identical"],
                    f"{ratio:.2f}x the time, {pit['ratios']['memory']:.2f}x the memory; output "
                    + ("identical" if pit["check"]["identical"] else "DIFFERENT"),
                ),
            ]
        )
    else:
        rows.append(["Point-in-time join", "not run"])
    logged = results["prediction_log"]
    if logged:
        rows.append(
            [
                f"Prediction log: p99 with it on within {logged['target_ratio'] - 1:.0%} of off "
                f"({logged['size']} items a request, {logged['busy']:.0%} busy)",
                verdict(
                    logged["p99_ratio"] <= logged["target_ratio"] and logged["dropped"] == 0,
                    f"{logged['p99_ms']['bentoml']:.1f} against "
                    f"{logged['p99_ms']['bentoml-nolog']:.1f} ms ({logged['p99_ratio']:.2f}x), "
                    f"{int(logged['dropped'])} dropped",
                ),
            ]
        )
    else:
        rows.append(["Prediction log's cost", "not run"])
    soak = results["soak"]
    if soak:
        memory = soak["memory_gib"]
        latency = soak["latency"]
        rows.append(
            [
                f"Soak: {soak['minutes']:g} min at {soak['rate_per_s']:g} req/s, zero errors, "
                "bounded memory",
                verdict(
                    latency["errors"] + latency.get("refused", 0) == 0 and memory["bounded"],
                    f"{int(latency['errors'] + latency.get('refused', 0))} errors or refusals in "
                    f"{int(latency['requests']):,} requests; "
                    f"memory {memory['first_minute_peak']:.2f} GiB in the first minute, "
                    f"{memory['last_minute_peak']:.2f} GiB in the last",
                ),
            ]
        )
    scale = results["scale"]
    if scale and scale.get("growth"):
        exponent = scale["growth"]["spark collect+features"]
        peak = max(f["spark_peak_gib"] for f in scale["factors"])
        first, last = scale["factors"][0], scale["factors"][-1]
        rows.append(
            [
                f"Collect + features no worse than linear from scale {first['scale_factor']} to "
                f"{last['scale_factor']}, peak memory < 16 GiB",
                verdict(
                    exponent <= 1.0 and peak < 16,
                    f"time grows as data^{exponent:.2f}; "
                    f"{last['spark_collect_features_seconds'] / first['spark_collect_features_seconds']:.1f}x "
                    f"the time for {_examples(last) / _examples(first):.0f}x the examples; "
                    f"peak {peak:.1f} GiB",
                ),
            ]
        )
    else:
        rows.append(["Collect + features scaling", "not run"])
    if scale:
        largest = max(scale["factors"], key=lambda f: f["scale_factor"])
        ratio = largest["spark_all_seconds"] / largest["steps"]["duckdb"]["seconds"]
        layers = largest["steps"].get(LAYERS)
        like_for_like = (
            f"; {largest['spark_all_seconds'] / layers['seconds']:.1f}x the same script writing "
            f"bronze and silver too ({layers['seconds']:.1f} s)"
            if layers
            else ""
        )
        rows.append(
            [
                f"Spark collect + validate + features <= {SPARK_TO_DUCKDB_TARGET:g}x the DuckDB "
                f"baseline at {largest['scale_factor']}x, same feature tables",
                verdict(
                    ratio <= SPARK_TO_DUCKDB_TARGET and largest["features_identical"],
                    f"{ratio:.1f}x: {largest['spark_all_seconds']:.0f} s against "
                    f"{largest['steps']['duckdb']['seconds']:.1f} s"
                    + like_for_like
                    + "; feature tables "
                    + ("identical" if largest["features_identical"] else "DIFFERENT"),
                ),
            ]
        )
    train = results["train_stages"]
    if train:
        total = train["summary"]["total_seconds"]
        rows.append(
            [
                f"`make train` from nothing <= {TRAIN_SECONDS_TARGET:g} s "
                f"({_runs(train['repeats']).lower()})",
                verdict(total <= TRAIN_SECONDS_TARGET, f"{total:.1f} s"),
            ]
        )
    return rows


def _examples(factor: dict[str, Any]) -> int:
    """The examples landed at one scale factor (results before the key was named: "flights")."""
    return int(factor.get("examples", factor.get("flights", 0)))


def _runs(count: int) -> str:
    return "One run" if count == 1 else f"Median of {count} runs"


def scale_section(scale: dict[str, Any]) -> str:
    rows = []
    for f in scale["factors"]:
        steps = f["steps"]
        rows.append(
            [
                f["scale_factor"],
                _examples(f),
                steps["collect"]["seconds"],
                steps["validate"]["seconds"],
                steps["features"]["seconds"],
                f["spark_collect_features_seconds"],
                f["spark_rows_per_second"],
                f["spark_peak_gib"],
                steps["duckdb"]["seconds"],
                f["duckdb_rows_per_second"],
                steps["duckdb"]["peak_gib"],
                f["spark_collect_features_seconds"] / steps["duckdb"]["seconds"],
                f["spark_all_seconds"] / steps["duckdb"]["seconds"],
                steps[LAYERS]["seconds"] if LAYERS in steps else "not run",
                f["spark_all_seconds"] / steps[LAYERS]["seconds"] if LAYERS in steps else "",
                "yes" if f["features_identical"] else "NO",
            ]
        )
    growth = "\n".join(
        f"- {label}: time grows as data^{value:.2f} (1.00 = linear)"
        for label, value in scale["growth"].items()
    )
    return (
        table(
            [
                "scale",
                "examples",
                "collect s",
                "validate s",
                "features s",
                "Spark collect+features s",
                "Spark rows/s",
                "Spark peak GiB",
                "DuckDB s",
                "DuckDB rows/s",
                "DuckDB peak GiB",
                "Spark / DuckDB",
                "Spark C+V+F / DuckDB",
                "DuckDB writing bronze + silver s",
                "Spark C+V+F / that",
                "same features",
            ],
            rows,
        )
        + f"\n\n{_runs(scale['factors'][0]['repeats'])} per scale factor. Rows/s counts "
        "every row landed (the examples' table and the other sources).\n\n"
        + growth
        + "\n\n![collect and features at scale](bench/results/scale.png)"
    )


def serving_targets(serving: dict[str, Any]) -> list[list[str]]:
    """Issue #17's bar: 200 req/s of one flight each on SQLite within 10 ms at p99, all
    answered, BentoML within 1.5x the FastAPI baseline; past capacity, fast refusals."""
    rows = []
    sqlite = serving["results"]["sqlite"]
    bento = sqlite.get("bentoml", {}).get("1", {})
    fastapi = sqlite.get("fastapi", {}).get("1", {})
    if "200" in bento:
        at = bento["200"]
        rows.append(
            [
                "Serving: p99 <= 10 ms at 200 req/s, one flight per request, 100% answered (SQLite)",
                verdict(
                    at["p99_ms"] <= 10 and at["answered_share"] == 1.0,
                    f"p99 {at['p99_ms']:.1f} ms, p99.9 {at['p999_ms']:.1f} ms, max "
                    f"{at['max_ms']:.1f} ms; {at['answered_share']:.2%} of {at['requests']:,} answered",
                ),
            ]
        )
        if "200" in fastapi:
            ratio = at["p99_ms"] / fastapi["200"]["p99_ms"]
            rows.append(
                [
                    "BentoML p99 <= 1.5x the FastAPI baseline's (200 req/s)",
                    verdict(
                        ratio <= 1.5,
                        f"{ratio:.2f}x: {at['p99_ms']:.1f} ms against "
                        f"{fastapi['200']['p99_ms']:.1f} ms",
                    ),
                ]
            )
    if "400" in bento:
        at = bento["400"]
        fast = at["errors"] == 0 and (at["refused"] == 0 or at["refused_p99_ms"] <= 20)
        detail = f"one flight per request: {_outcome(at)}"
        big = sqlite.get("bentoml", {}).get("100", {}).get("400")
        if big:  # far past capacity: where the refusals happen
            fast = fast and big["errors"] == 0 and big["refused_p99_ms"] <= 20
            detail += f"; 100 flights per request: {_outcome(big)}"
        rows.append(
            [
                "Past capacity (400 req/s): each request answered or refused fast (p99 of "
                "refusals <= 20 ms), none waits over 1 s",
                verdict(
                    fast and at["slowest_ms"] <= 1000 and (not big or big["slowest_ms"] <= 1000),
                    detail,
                ),
            ]
        )
    return rows


def capacity_targets(serving: dict[str, Any]) -> list[list[str]]:
    """Issue #33's bar, all in the same run: the service's capacity at least 0.8x the FastAPI
    baseline's (every request answered, p99 within 2x the baseline's at that rate); past
    it, every request answered or refused within 20 ms at p99."""
    from bench.serving_latency import BASELINE, WITHIN_BASELINE_P99

    rows = []
    for store, by_size in serving.get("capacity_against_baseline", {}).items():
        entry = by_size.get("1")
        if not entry or "bentoml" not in entry:
            continue
        own, ratio = entry["bentoml"], entry["ratio"].get("bentoml")
        cpu = entry.get("cpu_ms_per_request", {})
        work = (
            f"; CPU per request {cpu['bentoml']:.2f} against {cpu[BASELINE]:.2f} ms"
            if cpu.get("bentoml") and cpu.get(BASELINE)
            else ""
        )
        rows.append(
            [
                f"Serving capacity >= 0.8x the {BASELINE} baseline's ({store}, one item per "
                f"request; answered 100%, p99 within {WITHIN_BASELINE_P99:g}x the baseline's)",
                verdict(
                    ratio is not None and ratio >= 0.8,
                    f"{_rate(own)} against {_rate(entry[BASELINE])}"
                    + ("" if ratio is None else f": {ratio:.2f}x")
                    + work,
                ),
            ]
        )
        by_rate = serving["results"][store]["bentoml"]["1"]
        past = [r for r in by_rate if own is None or float(r) > own]
        if past:
            worst = max(past, key=lambda r: by_rate[r]["all_p99_ms"])
            rows.append(
                [
                    f"Past capacity ({store}): every request answered or refused within 20 ms "
                    "at p99",
                    verdict(
                        all(
                            by_rate[r]["all_p99_ms"] <= 20 and not by_rate[r]["errors"]
                            for r in past
                        ),
                        f"worst at {worst} req/s: p99 {by_rate[worst]['all_p99_ms']:.1f} ms, "
                        f"{by_rate[worst]['refused']:,} refused, {by_rate[worst]['errors']} errors",
                    ),
                ]
            )
    return rows


def serving_section(serving: dict[str, Any]) -> str:
    from bench.serving_latency import TABLE_HEADERS, table_rows

    capacity = [
        [store, server, size, _rate(bounds.get("10")), _rate(bounds.get("50"))]
        for store, by_server in serving["capacity_p99"].items()
        for server, by_size in by_server.items()
        for size, bounds in by_size.items()
    ]
    return (
        table(TABLE_HEADERS, table_rows(serving["results"]))
        + "\n\nHighest rate tried at which every request was answered and p99 stayed under the "
        "bound:\n\n"
        + table(["store", "server", "items/request", "p99 < 10 ms", "p99 < 50 ms"], capacity)
        # results recorded before the key was named "items" say "flights"
        + f"\n\n{serving.get('items', serving.get('flights', 0)):,} different real requests, "
        f"{serving['seconds']:g} s per rate, "
        f"median of {serving['repeats']} run(s) per point; server on CPU "
        f"{serving['cpus']['server']}, client on CPU {serving['cpus']['client']}; model "
        f"`{serving['model']}`. Latency counts from when each request was due (open loop)."
        + "\n\n![serving latency](bench/results/serving_latency.png)"
    )


def _outcome(point: dict[str, Any]) -> str:
    refused = (
        f"{point['refused']:,} refused (p99 {point['refused_p99_ms']:.1f} ms)"
        if point["refused"]
        else "none refused"
    )
    return (
        f"{point['answered']:,} answered, {refused}, {point['errors']:,} errors; slowest "
        f"{point['slowest_ms']:.0f} ms"
    )


def _rate(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:g} req/s"


def online_section(online: dict[str, Any]) -> str:
    rows = [
        [
            size,
            c["feast"]["p50_ms"],
            c["feast"]["p99_ms"],
            c["direct"]["p50_ms"],
            c["direct"]["p99_ms"],
            c["p50_ratio"],
            c["p99_ratio"],
        ]
        for size, c in online["cases"].items()
    ]
    return (
        table(
            [
                "flights per read",
                "Feast p50 ms",
                "Feast p99 ms",
                "direct p50 ms",
                "direct p99 ms",
                "p50 ratio",
                "p99 ratio",
            ],
            rows,
        )
        + f"\n\nStore: {online['store']}; {online['reads']} timed reads per case and reader, "
        "alternating, after 20 untimed; values checked equal between the two readers."
        + f"\n\n![online reads](bench/results/online_read_{online['store']}.png)"
    )


def pit_section(pit: dict[str, Any]) -> str:
    rows = [[engine, r["seconds"], r["peak_gib"]] for engine, r in pit["results"].items()]
    check = pit["check"]
    return (
        table(["engine", "join s (median)", "process peak GiB"], rows)
        + f"\n\n{pit['entities']:,} flights (every arrived flight of silver, what `fit` trains on), "
        f"{pit['repeats']} runs per engine. Output identical: "
        f"{'yes' if check['identical'] else 'NO'} ({check['values_compared']:,} feature values "
        f"compared; mismatches: {check['mismatched_values'] or 'none'})."
        + "".join(
            f" {engine}: {r['time']:.2f}x the baseline's time, {r['memory']:.2f}x its memory, "
            f"output {'identical' if pit['checks_by_engine'][engine]['identical'] else 'DIFFERENT'}."
            for engine, r in pit.get("ratios_by_engine", {}).items()
        )
        + " (`feast`: the platform's configured offline store; `feast-duckdb-stock`: Feast's own "
        "DuckDB store.)" + "\n\n![point-in-time join](bench/results/pit_join.png)"
    )


def train_section(train: dict[str, Any]) -> str:
    summary = train["summary"]
    total = summary["total_seconds"]
    rows = [[name, s, f"{s / total:.0%}"] for name, s in summary["stages"].items()]
    rows.append(["start-up outside the stages", summary["outside_stages_seconds"], ""])
    rows.append(["total", total, "100%"])
    return (
        table(["stage", "seconds", "share"], rows)
        + f"\n\nFrom an empty workspace, median of {train['repeats']} run(s); peak memory "
        f"{summary['peak_gib']:.2f} GiB."
        + "\n\n![make train by stage](bench/results/train_stages.png)"
    )


def soak_section(soak: dict[str, Any]) -> str:
    latency, memory = soak["latency"], soak["memory_gib"]
    return (
        table(
            [
                "requests",
                "errors",
                "p50 ms",
                "p99 ms",
                "memory, 1st min (GiB)",
                "memory, last min (GiB)",
            ],
            [
                [
                    int(latency["requests"]),
                    int(latency["errors"]),
                    latency["p50_ms"],
                    latency["p99_ms"],
                    memory["first_minute_peak"],
                    memory["last_minute_peak"],
                ]
            ],
        )
        + f"\n\nThe BentoML service at a constant {soak['rate_per_s']:g} requests/s for "
        f"{soak['minutes']:g} minutes after a 10 s warm-up; memory of the server's process tree "
        "sampled every second." + "\n\n![soak](bench/results/soak.png)"
    )


def render() -> str:
    names = [
        "scale",
        "pit_join",
        "online_read_sqlite",
        "online_read_redis",
        "serving_latency",
        "serving_capacity",
        "prediction_log",
        "train_stages",
        "soak",
    ]
    results = {name: load(name) for name in names}
    measured = [r for r in results.values() if r]
    parts = [START, "", "## Targets", "", table(["target", "result"], targets(results)), ""]
    if measured:
        m = measured[0]["machine"]
        # Machines of one description differ in speed from day to day (DuckDB's 30x run took
        # 19.5 to 58.5 s): say which CPU each result was measured on when they differ.
        same_cpu = len({r["machine"]["cpu"] for r in measured}) == 1
        parts += [
            f"Machine: {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, "
            f"Python {m['python']}, {m['java']}. Measured "
            + ", ".join(
                f"{r['benchmark']} {r['measured_at']}"
                + ("" if same_cpu else f" ({r['machine']['cpu']})")
                for r in measured
            )
            + ".",
            "",
        ]
    sections = [
        ("Collect + features at scale (Spark vs DuckDB)", "scale", scale_section),
        ("Point-in-time training set (Feast vs DuckDB ASOF JOIN)", "pit_join", pit_section),
        ("Online features, SQLite (Feast vs direct read)", "online_read_sqlite", online_section),
        ("Online features, Redis (Feast vs direct read)", "online_read_redis", online_section),
        ("Serving under open-loop load", "serving_latency", serving_section),
        ("`make train` by stage", "train_stages", train_section),
        ("Soak", "soak", soak_section),
    ]
    for title, name, render_section in sections:
        record = results[name]
        parts += [f"## {title}", "", render_section(record) if record else "Not run yet.", ""]
    parts.append(END)
    return "\n".join(parts)


def missing_plots() -> None:
    """Draw the plot of a benchmark whose figures are recorded but whose plot is not (from the
    recorded figures alone)."""
    from bench import online_read, pit_join, train_stages

    for name, draw in (
        ("pit_join", lambda r: pit_join.plot(r["results"])),
        ("online_read_sqlite", lambda r: online_read.plot("sqlite", r["cases"])),
        ("online_read_redis", lambda r: online_read.plot("redis", r["cases"])),
        ("train_stages", lambda r: train_stages.plot(r["summary"])),
    ):
        record = load(name)
        if record and not (RESULTS / f"{name}.png").is_file():
            draw(record)


def main() -> int:
    missing_plots()
    text = DOCUMENT.read_text() if DOCUMENT.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{DOCUMENT} has no {START} ... {END} block to fill")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOCUMENT.write_text(before + render() + after)
    print(f"wrote {Path(DOCUMENT).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
