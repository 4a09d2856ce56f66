"""`make train` end to end, by stage: the whole chain from an empty workspace, as a new user
runs it, timed per stage from the chain's own summary.

    .venv/bin/python -m bench.train_stages --repeats 3

Each repeat starts from nothing (`bench/work/train/`: no landing, lake, registry, stores) and
runs `python -m pipelines train` in a process of its own; the peak memory is that process
tree's (the Spark JVM included).
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from bench.common import (
    WORK,
    bar_chart,
    measure,
    median,
    print_table,
    python,
    stage_seconds,
    workspace_env,
    write_result,
)


def plot(summary: dict[str, Any]) -> None:
    stages = {**summary["stages"], "start-up": summary["outside_stages_seconds"]}
    bar_chart(
        "train_stages",
        "make train by stage",
        "seconds",
        list(stages),
        {"median": list(stages.values())},
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = WORK / "train"
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        shutil.rmtree(folder, ignore_errors=True)
        run = measure(python("-m", "pipelines", "train"), workspace_env(folder))
        stages = stage_seconds(run.output)
        runs.append({"total_seconds": run.seconds, "peak_gib": run.peak_gib, "stages": stages})
        print(f"  run {repeat + 1}: {run.seconds:.1f} s, peak {run.peak_gib:.2f} GiB")
    shutil.rmtree(folder, ignore_errors=True)
    names = list(runs[0]["stages"])
    summary = {
        "total_seconds": median([r["total_seconds"] for r in runs]),
        "peak_gib": max(r["peak_gib"] for r in runs),
        "stages": {name: median([r["stages"][name] for r in runs]) for name in names},
        # Process start, imports and Spark's start-up, outside every stage's own clock.
        "outside_stages_seconds": median(
            [r["total_seconds"] - sum(r["stages"].values()) for r in runs]
        ),
    }
    write_result("train_stages", {"repeats": args.repeats, "summary": summary, "runs": runs})
    plot(summary)
    total = summary["total_seconds"]
    rows = [
        [name, seconds, f"{seconds / total:.0%}"] for name, seconds in summary["stages"].items()
    ]
    rows.append(["(start-up, outside stages)", summary["outside_stages_seconds"], ""])
    rows.append(["total", total, "100%"])
    print(f"make train from nothing, median of {args.repeats} run(s)")
    print_table(["stage", "seconds", "share"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
