"""The workspace's run lock: one run at a time; the next waits (saying so) or exits naming the
holder; a crashed holder's lock is taken over with a warning."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from configs.settings import RunLockConfig
from pipelines.adapters.run_lock import (
    Holder,
    WorkspaceBusy,
    WorkspaceLock,
    hold,
    should_wait,
)

QUICK = {"max_wait_s": 5.0, "progress_every_s": 0.2}


def config(tmp_path: Path, **values: object) -> RunLockConfig:
    return RunLockConfig(path=str(tmp_path / "run.lock"), **(QUICK | values))


def test_a_second_run_exits_at_once_naming_the_holder(tmp_path: Path) -> None:
    settings = config(tmp_path)
    with hold(settings, "train", wait=False) as me:
        assert me is not None
        started = time.monotonic()
        with pytest.raises(WorkspaceBusy) as refused, hold(settings, "collect", wait=False):
            pass
        assert time.monotonic() - started < 2
    message = str(refused.value)
    assert f"in use by `train` (process {me.pid} on {me.host}, since {me.since})" in message
    assert "--set run_lock.wait=always" in message and "waiting" not in message
    with hold(settings, "collect", wait=False):  # given back: the next run takes it
        pass


@pytest.mark.slow
def test_a_waiting_run_says_who_it_waits_for_and_goes_on_when_the_lock_is_free(
    tmp_path: Path,
) -> None:
    settings = config(tmp_path)
    lines: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def first_run() -> None:
        with hold(settings, "train", wait=False):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=first_run)
    holder.start()
    assert entered.wait(10)
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    with hold(settings, "monitor --retrain", wait=True, progress=lines.append) as me:
        waited = time.monotonic() - started
        assert me is not None and WorkspaceLock(settings.path).holder() == me
    holder.join(10)
    assert 0.8 < waited < 5
    # a line about every 0.2 s while it waits, each naming the run it waits for (the last
    # may come as that run lets go)
    assert len(lines) >= 3, lines
    assert all("waiting for the workspace: `train` (process" in line for line in lines[:-1])
    assert lines[0].endswith("of at most 5 s)")


@pytest.mark.slow
def test_a_waiting_run_gives_up_after_the_longest_wait(tmp_path: Path) -> None:
    settings = config(tmp_path, max_wait_s=0.6)
    with (
        hold(settings, "train", wait=False),
        pytest.raises(WorkspaceBusy, match=r"in use by `train` .* after waiting 1 s"),
        hold(settings, "train", wait=True, progress=lambda line: None),
    ):
        pass


HOLD_AND_HANG = """
import sys, time
from configs.settings import RunLockConfig
from pipelines.adapters.run_lock import hold
with hold(RunLockConfig(path=sys.argv[1]), "train", wait=False):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_lock_whose_run_died_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = config(tmp_path)
    crashed = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_HANG, settings.path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert crashed.stdout is not None and crashed.stdout.readline().strip() == "held"
        with (
            pytest.raises(WorkspaceBusy, match=f"process {crashed.pid} "),
            hold(settings, "train", wait=False),
        ):
            pass
    finally:
        crashed.send_signal(signal.SIGKILL)  # killed: it never gives the lock back
        crashed.wait(10)
    left = WorkspaceLock(settings.path).holder()
    assert left is not None and left.pid == crashed.pid  # its record stayed behind
    with caplog.at_level(logging.WARNING), hold(settings, "train", wait=False) as me:
        assert WorkspaceLock(settings.path).holder() == me
    assert f"taking over from `train` (process {crashed.pid}" in caplog.text
    assert WorkspaceLock(settings.path).holder() is None  # given back: no record left


def test_the_orchestrators_lock_takes_nothing_more(tmp_path: Path) -> None:
    settings = config(tmp_path, kind="orchestrator")
    with hold(settings, "fit", wait=False) as me, hold(settings, "fit", wait=False) as again:
        assert me is None and again is None
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("wait", "interactive", "expected"),
    [
        ("auto", True, True),  # a person at a terminal waits
        ("auto", False, False),  # a scheduled run exits at once
        ("always", False, True),
        ("never", True, False),
    ],
)
def test_who_waits(tmp_path: Path, wait: str, interactive: bool, expected: bool) -> None:
    assert should_wait(config(tmp_path, wait=wait), interactive=interactive) is expected


def test_a_holder_reads_as_the_run_it_is() -> None:
    holder = Holder(pid=7, host="box", command="train", since="2026-01-02T03:04:05+00:00")
    assert str(holder) == "`train` (process 7 on box, since 2026-01-02T03:04:05+00:00)"
