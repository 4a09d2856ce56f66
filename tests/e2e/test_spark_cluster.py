"""The Spark stages on a real Spark cluster, not only `local[*]`: a standalone master and two
workers started with PySpark's own daemon script (`sbin/spark-daemon.sh`, what
`start-master.sh` and `start-worker.sh` run), the chain's land, collect, validate and features
run by the CLI against its `spark://` URL, and their silver and feature tables compared with the
same stages' in local mode, row for row.

What a cluster changes is made to show: the executors are other JVMs (with Python workers of
their own), and the workers run in a mount namespace of their own where `/tmp` is an empty
tmpfs, so the driver's scratch space (its `/tmp`, Spark's local dirs, its working directory)
is not theirs. Only the data root, outside `/tmp`, is shared, as a bucket is on EMR. Code
that worked only because the driver and executors shared a process or a disk (a closure over
driver state, a path only the driver can see) fails here or gives other tables.

Both runs are subprocesses (one Spark session per process: this one holds the suite's).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import requests
from pyspark.find_spark_home import _find_spark_home

from features.definitions import feature_table_path
from pipelines.adapters.storage import SILVER, StorageLayout
from tests.conftest import PLATFORM_USECASE, platform_settings
from tests.serving_helpers import PLATFORM, free_port
from usecases.contract import INGESTED_AT, SOURCE_FILE

SPARK_HOME = Path(_find_spark_home())
DAEMON = SPARK_HOME / "sbin" / "spark-daemon.sh"
MASTER, WORKER = "org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"
WORKERS = 2
# Each worker: one core and enough memory for one executor of EXECUTOR_MEMORY.
WORKER_MEMORY, EXECUTOR_MEMORY = "1536m", "1g"


def _daemon_env(folder: Path) -> dict[str, str]:
    return os.environ | {
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_PID_DIR": str(folder / "pids"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }


def _logs(folder: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:]
        for log in sorted((folder / "logs").glob("*.out"))
    )


@contextmanager
def standalone_cluster(folder: Path) -> Iterator[str]:
    """A master and WORKERS workers on this machine, the workers with a /tmp of their own;
    yields the master's `spark://` URL. Everything is stopped on the way out."""
    env = _daemon_env(folder)
    port, ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    daemon = [str(DAEMON), "start"]
    subprocess.run(
        [*daemon, MASTER, "1", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        for number in range(1, WORKERS + 1):
            work_dir = folder / f"worker-{number}"
            work_dir.mkdir()
            worker = [
                *daemon, WORKER, str(number), "--host", "127.0.0.1", "--webui-port", "0",
                "--cores", "1", "--memory", WORKER_MEMORY, "--work-dir", str(work_dir), url,
            ]  # fmt: skip
            # A private /tmp: the driver's scratch space is not the workers'.
            hidden = f"mount -t tmpfs tmpfs /tmp && exec {shlex.join(worker)}"
            subprocess.run(
                # (a user namespace too: no root needed where the kernel allows them)
                [
                    *("unshare", "--user", "--map-root-user", "--mount"),
                    *("--propagation", "private", "sh", "-c", hidden),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                state = requests.get(f"http://127.0.0.1:{ui}/json/", timeout=2).json()
                if state.get("aliveworkers") == WORKERS:
                    break
            except (requests.ConnectionError, ValueError):
                pass
            assert time.monotonic() < deadline, "the cluster did not come up:\n" + _logs(folder)
            time.sleep(0.5)
        yield url
    finally:
        for number in range(WORKERS, 0, -1):
            subprocess.run([str(DAEMON), "stop", WORKER, str(number)], env=env, check=False)
        subprocess.run([str(DAEMON), "stop", MASTER, "1"], env=env, check=False)


def run_data_stages(root: Path, spark: dict[str, object]) -> None:
    """land -> collect -> validate -> features, by the CLI, from `root`, every location
    relative to it (the settings make them absolute for every stage)."""
    root.mkdir(parents=True, exist_ok=True)
    sections = {
        "paths": {name: name for name in ("landing", "lake", "quarantine", "reports")},
        "run_lock": {"path": "run.lock"},
        "spark": spark,
        "features": {
            "registry": {"registry_type": "file", "path": "feast/registry.db"},
            "online_store": {"type": "sqlite", "path": "feast/online.db"},
        },
    }
    merges = [
        arg for key, value in sections.items() for arg in ("--merge", f"{key}={json.dumps(value)}")
    ]
    command = [sys.executable, "-m", "pipelines", *merges, "train", "--to", "features"]
    env = os.environ | {"MLOPS_USECASE": PLATFORM_USECASE, "MLOPS_ENV": "local"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"{shlex.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    )


def tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every silver table and feature table under `root`, rows in one order: the moment each
    row was collected left out (the two runs are minutes apart), the file it came from named
    from `root` (each run has its own)."""
    settings = platform_settings(root)
    layout = StorageLayout(settings.paths)
    found = {}
    for source in PLATFORM.sources:
        drops = layout.drops_in(layout.silver(source.name))
        assert drops, f"no published silver for {source.name} under {root}"
        found[f"{SILVER}/{source.name}"] = pd.concat(
            [pd.read_parquet(layout.drop_dir(layout.silver(source.name), d)) for d in sorted(drops)]
        )
    for view in PLATFORM.views:
        found[f"features/{view.name}"] = pd.read_parquet(feature_table_path(settings, view.name))
    for name, frame in found.items():
        frame = frame.drop(columns=[INGESTED_AT], errors="ignore")
        if SOURCE_FILE in frame:
            frame[SOURCE_FILE] = frame[SOURCE_FILE].str.replace(str(root), "<root>", regex=False)
        found[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return found


@pytest.fixture(scope="module")
def shared_root() -> Iterator[Path]:
    """The data both runs write, and the daemons' files: outside /tmp, so the workers see them
    (the data is their bucket)."""
    root = Path(tempfile.mkdtemp(prefix="mlops-cluster-", dir="/var/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_data_stages_on_a_standalone_cluster_write_what_local_mode_writes(
    shared_root: Path,
) -> None:
    run_data_stages(shared_root / "local", {"master": "local[2]", "shuffle_partitions": 2})
    daemons = shared_root / "daemons"  # pid files, logs and work dirs: outside the private /tmp
    daemons.mkdir()
    with standalone_cluster(daemons) as url:
        conf = {
            "spark.executor.memory": EXECUTOR_MEMORY,
            "spark.executor.cores": "1",
            "spark.cores.max": str(WORKERS),
            # Executors on one host read each other's shuffle files from the disk they share;
            # these two have a /tmp each, as two hosts would: shuffle blocks go over the network.
            "spark.shuffle.readHostLocalDisk": "false",
        }
        run_data_stages(
            shared_root / "cluster",
            {"master": url, "shuffle_partitions": 2, "driver_memory": "2g", "conf": conf},
        )
        executors = list(daemons.glob("worker-*/app-*/*"))
    # The work ran on the workers: each started executors for the run.
    assert {path.parts[-3] for path in executors} == {f"worker-{n}" for n in range(1, WORKERS + 1)}
    local, cluster = tables(shared_root / "local"), tables(shared_root / "cluster")
    assert sorted(cluster) == sorted(local)
    for name, frame in local.items():
        pd.testing.assert_frame_equal(cluster[name], frame, check_dtype=True, obj=name)
