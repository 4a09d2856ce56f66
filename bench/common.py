"""What every benchmark shares: running a measured child process, the machine's description,
medians, and writing `bench/results/<name>.json` (plus a plot) for `bench.report`.

Each measured step runs as a child process so that its peak memory is its own: the peak is
the largest resident set of the child and all its descendants (Spark's JVM included),
sampled every 50 ms by psutil.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"  # scratch data of the benchmarks (git-ignored)

# One line of the chain's summary: stage, status, rows in, rows out, seconds.
SUMMARY_LINE = re.compile(
    r"^(?P<stage>[a-z][a-z-]*)\s+ok\s+[\d,]+\s+[\d,]+\s+(?P<seconds>[\d.]+)s$"
)


def stage_seconds(output: str) -> dict[str, float]:
    """Stage -> seconds, from the summary `python -m pipelines train` prints."""
    found = {}
    for line in output.splitlines():
        if match := SUMMARY_LINE.match(line.strip()):
            found[match["stage"]] = float(match["seconds"])
    return found


GIB = 1024**3

# What a measured child needs: the project on the path, no usage reporting, quiet libraries.
CHILD_ENV = {
    "PYTHONPATH": str(ROOT),
    "SPARK_LOCAL_IP": "127.0.0.1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    output: str

    @property
    def peak_gib(self) -> float:
        return self.peak_rss_bytes / GIB


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and of every descendant alive now: a
    server's work, its workers and helper processes included."""
    root = psutil.Process(pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


def measure(
    command: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT, check: bool = True
) -> Measured:
    """Run `command` to its end: wall time and the peak resident memory of its process tree."""
    started = time.perf_counter()
    child = subprocess.Popen(
        list(command),
        cwd=cwd,
        env={**os.environ, **CHILD_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watched = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, _tree_rss(watched))
            except psutil.NoSuchProcess:
                return
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    result = Measured(seconds, peak, child.returncode, output)
    if check and child.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}:\n{tail}")
    return result


def python(*args: str) -> list[str]:
    """A command line running this venv's Python."""
    return [sys.executable, *args]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    java = shutil.which("java")
    java_version = ""
    if java:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        java_version = (probe.stderr or probe.stdout).splitlines()[0] if probe.stderr else ""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": java_version,
    }


def write_result(name: str, record: dict[str, Any]) -> Path:
    """`bench/results/<name>.json`, stamped with the machine and the time of the run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **record,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.rjust(widths[i]) for i, value in enumerate(row)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def workspace_overrides(folder: Path) -> dict[str, Any]:
    """Settings that put every zone and store of a run under `folder` (local profile)."""
    data = folder / "data"
    return {
        "paths": {
            "landing": str(data / "landing"),
            "lake": str(data / "lake"),
            "quarantine": str(data / "quarantine"),
            "reports": str(folder / "reports"),
            "prediction_log": str(data / "prediction_log"),
            "monitoring": str(data / "monitoring"),
            "bentoml_home": str(data / "bentoml"),
        },
        "features": {
            "registry": {"registry_type": "file", "path": str(data / "feast" / "registry.db")},
            "online_store": {"type": "sqlite", "path": str(data / "feast" / "online.db")},
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
            "artifact_location": str(data / "mlflow" / "artifacts"),
        },
    }


def workspace_env(folder: Path, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Environment for a child running the platform with its data under `folder`."""
    overrides = workspace_overrides(folder)
    for key, value in (extra or {}).items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return {"MLOPS_ENV": "local", "MLOPS_OVERRIDES": json.dumps(overrides)}


def bar_chart(
    name: str, title: str, ylabel: str, groups: Sequence[str], series: dict[str, Sequence[float]]
) -> Path:
    """Grouped bars, one group per entry of `groups`, one bar per series: results/<name>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        positions = [g + index * width for g in range(len(groups))]
        axis.bar(positions, values, width=width, label=label)
    axis.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], list(groups))
    axis.set(ylabel=ylabel, title=title)
    axis.legend()
    return save_figure(fig, name)


def save_figure(fig: Any, name: str) -> Path:
    """Write a matplotlib figure to results/<name>.png and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class View(NamedTuple):
    """A feature view as the hand-written baselines read it: its entity's join key, its TTL
    (zero: no limit) and its stored features as (name, type, description)."""

    join_key: str
    ttl: timedelta
    features: list[tuple[str, str, str]]


def usecase_of(settings: Any) -> Any:
    """The use case the settings name (`usecase:` in configs/base.yaml, or MLOPS_USECASE):
    what every benchmark measures."""
    from usecases import load

    return load(settings.usecase)


def feature_views(usecase: Any) -> dict[str, View]:
    """The use case's feature views, by name."""
    return {
        view.name: View(
            usecase.entity(view.entity).join_key,
            view.ttl,
            [(f.name, f.dtype, f.description) for f in view.features],
        )
        for view in usecase.views
    }


def silver_examples(settings: Any, usecase: Any) -> Any:
    """The silver rows the use case's examples are made from (pandas), or exit saying what to run."""
    from pipelines.adapters.storage import StorageLayout

    examples = usecase.examples
    silver = StorageLayout(settings.paths).read_silver_columns(
        examples.table, list(examples.columns)
    )
    if silver is None:
        raise SystemExit(f"no silver {examples.table}: run `make train` first")
    return silver


def newest(rows: Any, column: str, days: int) -> Any:
    """The rows whose `column` (a date or time) falls in the last `days` of the newest one."""
    import pandas as pd

    when = pd.to_datetime(rows[column], utc=True)
    return rows[when > when.max() - pd.Timedelta(days=days)]
