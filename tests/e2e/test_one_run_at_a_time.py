"""One chain run at a time per workspace. Two `train` started together on one workspace with a
new drop landed once both reported success while silver held the drop as an empty folder, and
each registered a model without it. Now the second says who holds the workspace and exits;
the drop is published once, whole, and one model version is registered for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from configs.settings import USECASE_VARIABLE
from models.tracking import Tracker
from pipelines import cli
from pipelines.adapters.run_lock import WorkspaceLock
from pipelines.adapters.storage import StorageLayout
from tests.conftest import PLATFORM_USECASE, platform_settings
from tests.lake_helpers import cli_flags, land_new_drop, new_month

ROOT = Path(__file__).resolve().parents[2]
TABLE, NEW_DROP = "meter_readings", "2024-04"


def test_two_chains_at_once_one_runs_and_the_other_names_it(tmp_path: Path, spark) -> None:
    flags = cli_flags(tmp_path)
    assert cli.main([*flags, "train"]) == cli.EXIT_OK  # the workspace, trained
    settings = platform_settings(tmp_path)
    layout = StorageLayout(settings.paths)
    landed = new_month(NEW_DROP)
    land_new_drop(settings, TABLE, NEW_DROP, landed)
    versions_before = len(Tracker(settings).versions())

    command = [sys.executable, "-m", "pipelines", *flags, "train"]
    env = {**os.environ, USECASE_VARIABLE: PLATFORM_USECASE}
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lock = WorkspaceLock(settings.run_lock.path)
    deadline = time.monotonic() + 120
    while (lock.holder() is None or lock.holder().pid != first.pid) and first.poll() is None:
        assert time.monotonic() < deadline, "the first run never took the workspace's lock"
        time.sleep(0.1)
    # Started while the first holds the lock, not at a terminal: it exits at once.
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=900)

    assert first.returncode == cli.EXIT_OK, err[-3000:]
    assert second.returncode == cli.EXIT_BUSY, second.stderr[-3000:]
    assert f"the workspace is in use by `train` (process {first.pid} on " in second.stderr
    assert "meter_readings: 1 drop(s) passed and published" in out
    assert "collect" not in second.stdout  # it ran no stage
    published = layout.drops_in(layout.silver(TABLE))
    assert list(published).count(NEW_DROP) == 1
    folder = Path(StorageLayout.drop_dir(layout.silver(TABLE), NEW_DROP))
    rows = sum(pq.ParquetFile(part).metadata.num_rows for part in folder.glob("*.parquet"))
    assert rows == published[NEW_DROP].rows_out == len(landed)
    assert len(Tracker(settings).versions()) == versions_before + 1
    assert lock.holder() is None  # given back
