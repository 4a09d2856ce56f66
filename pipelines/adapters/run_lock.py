"""One run at a time per workspace: the lock every command that writes the workspace holds.

A workspace is what a profile writes: its lake, quarantine, feature store and registry. Two
runs writing one workspace at once each believe what they staged is theirs: the second
validate publishes an empty folder over the first's drop, and both report success. So a run
takes the workspace's lock before its first stage and gives it back after its last.

Kinds (`run_lock.kind` in config), behind one interface (`hold`):
- `file`: an OS lock (flock, through the `filelock` library) on a file beside the lake, with
  a record of who holds it (process, host, command, since when). The OS lets go of a lock
  when its process dies, so a crashed run never blocks the next one; its record stays behind
  and the next run says it takes over from it.
- `orchestrator`: the orchestrator that starts the stages holds the lock around the whole run
  (on AWS the state machine's DynamoDB item, infra/stacks/chain.py); a stage run by it
  takes nothing more.

A run that finds the lock held either waits for it, with a progress line, up to
`run_lock.max_wait_s`, or exits at once naming the run that holds it (`run_lock.wait`: `auto`
waits when a person is at a terminal and exits when scheduled).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from configs.settings import RunLockConfig

log = logging.getLogger(__name__)

FILE, ORCHESTRATOR = "file", "orchestrator"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) the lock."""

    pid: int
    host: str
    command: str
    since: str

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=command,
            since=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def __str__(self) -> str:
        return f"`{self.command}` (process {self.pid} on {self.host}, since {self.since})"


class WorkspaceBusy(RuntimeError):
    """Another run holds the workspace's lock (and this one will not, or no longer, wait)."""

    def __init__(self, path: str, holder: Holder | None, waited_s: float) -> None:
        self.holder = holder
        who = str(holder) if holder else "another run (it left no record)"
        waited = f" after waiting {waited_s:.0f} s" if waited_s else ""
        super().__init__(
            f"the workspace is in use by {who}{waited}: one run at a time writes it "
            f"(lock {path}). Run again when it has finished, or let this run wait for it "
            "(--set run_lock.wait=always)."
        )


def should_wait(config: RunLockConfig, interactive: bool | None = None) -> bool:
    """`always`, `never`, or `auto`: wait when a person is at a terminal."""
    if config.wait == "auto":
        return sys.stderr.isatty() if interactive is None else interactive
    return config.wait == "always"


@contextmanager
def hold(
    config: RunLockConfig,
    command: str,
    *,
    wait: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Holder | None]:
    """Hold the workspace's lock for the duration of the block (`orchestrator`: held by the
    orchestrator already). Raises WorkspaceBusy when another run holds it and this one does
    not wait, or has waited `max_wait_s`."""
    if config.kind == ORCHESTRATOR:
        log.info("run lock: held by the orchestrator that started this stage")
        yield None
        return
    lock = WorkspaceLock(config.path)
    me = Holder.me(command)
    lock.acquire(
        me,
        max_wait_s=config.max_wait_s if (should_wait(config) if wait is None else wait) else 0.0,
        progress_every_s=config.progress_every_s,
        progress=progress or (lambda line: print(line, file=sys.stderr, flush=True)),
    )
    try:
        yield me
    finally:
        lock.release()


class WorkspaceLock:
    """The `file` kind: an OS lock on `<path>.lock` and the holder's record in `<path>`."""

    def __init__(self, path: str) -> None:
        self.record = Path(path)
        self._lock = FileLock(f"{path}.lock")

    def holder(self) -> Holder | None:
        """The record of the run holding the lock, or of the last one that did not finish."""
        try:
            return Holder(**json.loads(self.record.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(
        self,
        me: Holder,
        *,
        max_wait_s: float,
        progress_every_s: float,
        progress: Callable[[str], None],
    ) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        last_line = started
        while True:
            waited = time.monotonic() - started
            try:
                # each attempt blocks until the next progress line is due, at most
                self._lock.acquire(timeout=min(progress_every_s, max(0.0, max_wait_s - waited)))
                break
            except Timeout:
                waited = time.monotonic() - started
                if waited >= max_wait_s:
                    waited_s = waited if max_wait_s else 0.0  # not waiting: say nothing of it
                    raise WorkspaceBusy(str(self.record), self.holder(), waited_s) from None
                if time.monotonic() - last_line >= progress_every_s:
                    last_line = time.monotonic()
                    progress(
                        f"waiting for the workspace: {self.holder() or 'another run'} holds it "
                        f"({waited:.0f} s of at most {max_wait_s:.0f} s)"
                    )
        left = self.holder()
        if left is not None:  # the lock was free, yet a record stayed: its run did not finish
            log.warning(
                "run lock: taking over from %s: it did not finish (its process is gone); "
                "what it left half-done is cleaned up or redone by this run",
                left,
            )
        tmp = self.record.with_name(f".{self.record.name}.{me.pid}")
        tmp.write_text(json.dumps(asdict(me)))
        tmp.replace(self.record)

    def release(self) -> None:
        self.record.unlink(missing_ok=True)
        self._lock.release()
