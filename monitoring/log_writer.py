"""The prediction log's writer process: the log's work off the service's worker.

A worker answering requests hands each request's predictions, as one `Batch`, to a
`WriterProcess` and returns: a list append under a lock, waking nobody. A feeder thread
collects what waits every HANDOVER_S (or as soon as HANDOVER_ROWS records wait) and pickles
the batches to a child process (`python -m monitoring.log_writer`) through its stdin; the child turns them
into records, buffers them and writes the parquet files (`PredictionLog`), then reports on its
stdout what it wrote or lost. Building tables and compressing them, the costly part, never
holds the worker's interpreter lock, and the child runs only on CPU time the worker leaves
idle (SCHED_IDLE), so it never delays a request being answered.

Bounded: at most `capacity` records are on their way (in the worker, in the pipe, in the
child's buffer); past that a request's records are dropped at once and counted. Nothing is lost
silently: records dropped for room, those of a failed write and those of a child that died are
counted (`dropped`, on `/metrics`), and a child that died is started again. `close` (the
worker's SIGTERM) hands over everything still waiting and waits for the child to write it. The
child ignores SIGINT and SIGTERM, which a terminal or a process manager may send to the whole
process group: it stops when its stdin closes (the worker closing it, or the worker dying),
after writing what it holds.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

# Nothing heavy at the top: the child ignores the stopping signals before anything else loads.
if TYPE_CHECKING:
    from monitoring.prediction_log import Batch

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("<Q")  # each frame on the child's stdin: its length, then a pickle
WRITTEN, DROPPED = "written", "dropped"  # the child's report lines: "<kind> <count>"
_ROOT = Path(__file__).resolve().parents[1]  # where `monitoring` is importable from
RESPAWN_PAUSE_S = 1.0
# How often the feeder collects what the worker handed over, and how many waiting records wake
# it sooner. Waking it on every request cost the worker a thread switch per request (a quarter
# of its interpreter-lock time at 200 requests/s on one CPU, measured with py-spy --gil).
HANDOVER_S = 0.05
HANDOVER_ROWS = 1_000


@dataclass
class WriterProcess:
    """The worker's end: `log` batches; a child process writes them to `location`."""

    location: str
    features: Sequence[str]
    source: str
    capacity: int = 100_000
    flush_rows: int = 5_000
    flush_interval_s: float = 5.0
    on_dropped: Callable[[int], None] = lambda count: None
    on_written: Callable[[int], None] = lambda count: None
    written: int = 0
    dropped: int = 0
    in_flight: int = 0  # records handed over and not yet reported written or dropped
    _waiting: list[Batch] = field(default_factory=list)
    _waiting_rows: int = 0  # the records in `_waiting`
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: threading.Condition = field(init=False)
    _closing: bool = False
    _child: subprocess.Popen[bytes] | None = None
    _ended: subprocess.Popen[bytes] | None = None  # the child whose reports ended
    _feeder: threading.Thread | None = None
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        from storage import files as fs

        self._ready = threading.Condition(self._lock)
        if not fs.is_remote(self.location):  # the child's working folder may differ
            self.location = str(Path(self.location).absolute())

    def start(self) -> WriterProcess:
        self._child = self._spawn()
        self._feeder = threading.Thread(
            target=self._feed, name="prediction-log-feeder", daemon=True
        )
        self._feeder.start()
        return self

    @property
    def child_pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def log(self, batch: Batch) -> int:
        """Hand `batch` over (never blocks on the child); returns how many records were
        dropped for want of room (all of the batch's, or none)."""
        count = len(batch.ids)
        with self._ready:
            fits = not self._closing and self.in_flight + count <= self.capacity
            if fits:
                self.in_flight += count
                self._waiting.append(batch)
                self._waiting_rows += count
                if self._waiting_rows >= HANDOVER_ROWS:
                    self._ready.notify()
        if not fits:
            why = "the writer is closing" if self._closing else "the prediction log is full"
            self._count(DROPPED, count, why)
            return count
        return 0

    def close(self, timeout_s: float = 30.0) -> None:
        """Hand over everything waiting, then wait for the child to write it and exit;
        whatever it could not write in `timeout_s` is counted as dropped."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._feeder is not None:
            self._feeder.join(timeout_s)
        child = self._child
        if child is not None:
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("prediction log: the writer did not finish in %.0f s", timeout_s)
                child.kill()
                child.wait()
        if self._reader is not None:
            self._reader.join(timeout_s)
        if self.in_flight:
            self._settle(DROPPED, self.in_flight, "the writer stopped before writing them")

    # -- the feeder and reader threads ------------------------------------------------------

    def _feed(self) -> None:
        """Pickle waiting batches to the child, in order; a child that died is replaced and
        what it never got goes to the next one."""
        while True:
            with self._ready:
                # Every HANDOVER_S, or sooner when woken (many records, closing, the child
                # ended): what waits then goes in one go.
                while not (self._waiting or self._closing or self._ended is self._child):
                    self._ready.wait(HANDOVER_S)
                ended = self._ended is self._child and not self._closing
                batches, self._waiting = ([], self._waiting) if ended else (self._waiting, [])
                if not ended:
                    self._waiting_rows = 0
                closing = self._closing
            if ended:  # the child's reports ended while it was expected to live: it died
                assert self._child is not None
                self._child_died(self._child, closing)
                continue
            framed = []
            for batch in batches:
                try:
                    framed.append((batch, _frame(batch)))
                except Exception:  # a bug, which must not stop the feeder
                    log.exception("prediction log: a batch could not be pickled")
                    self._settle(DROPPED, len(batch.ids), "they could not be pickled")
            child = self._child
            assert child is not None and child.stdin is not None
            sent = 0
            try:
                for _, frame in framed:
                    child.stdin.write(frame)
                    child.stdin.flush()  # a pipe broken now fails this frame, not a later one
                    sent += 1
                if closing:
                    child.stdin.close()
            except OSError:  # a broken pipe: the child died
                with self._ready:
                    unsent = [batch for batch, _ in framed[sent:]]
                    self._waiting[:0] = unsent
                    self._waiting_rows += sum(len(batch.ids) for batch in unsent)
                self._child_died(child, closing)
            if closing:
                return

    def _child_died(self, child: subprocess.Popen[bytes], closing: bool) -> None:
        """Count what the dead child held or never got (not what still waits here), and
        start another unless closing."""
        child.kill()
        code = child.wait()
        if self._reader is not None:
            self._reader.join()  # its reports of what it did write are counted first
        with self._lock:
            lost = self.in_flight - sum(len(batch.ids) for batch in self._waiting)
        log.error("prediction log: the writer process exited (code %s)", code)
        if lost:
            self._settle(DROPPED, lost, "the writer process died")
        if not closing:
            time.sleep(RESPAWN_PAUSE_S)  # a child that dies on start must not spin the feeder
            self._child = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
        child = subprocess.Popen(
            [sys.executable, "-m", "monitoring.log_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            # Out of reach of signals sent to the worker's process group, and in the worker's
            # session: Linux gives a new session a scheduling group of its own (autogroup), in
            # which SCHED_IDLE only ranks the child against itself and it takes the worker's
            # CPU as an equal (measured: 30-50 ms stalls of the worker at every flush).
            process_group=0,
        )
        assert child.stdin is not None and child.stdout is not None
        settings = {
            "location": self.location,
            "features": list(self.features),
            "source": self.source,
            "capacity": self.capacity,
            "flush_rows": self.flush_rows,
            "flush_interval_s": self.flush_interval_s,
        }
        child.stdin.write(_frame(settings))
        child.stdin.flush()
        self._reader = threading.Thread(
            target=self._read, args=(child,), name="prediction-log-reports", daemon=True
        )
        self._reader.start()
        return child

    def _read(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            kind, _, count = line.decode().partition(" ")
            if kind in (WRITTEN, DROPPED):
                self._settle(kind, int(count), "the writer could not write them")
        with self._ready:  # the child ended: the feeder replaces it unless closing
            self._ended = child
            self._ready.notify()

    def _settle(self, kind: str, count: int, why: str) -> None:
        """`count` records on their way are now written or lost."""
        with self._lock:
            self.in_flight -= count
        self._count(kind, count, why)

    def _count(self, kind: str, count: int, why: str) -> None:
        with self._lock:
            if kind == WRITTEN:
                self.written += count
            else:
                self.dropped += count
        if kind == WRITTEN:
            self.on_written(count)
        else:
            self.on_dropped(count)
            log.warning("prediction log: %d record(s) dropped: %s", count, why)


def _frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def _receive(pipe: IO[bytes]) -> Any | None:
    header = pipe.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None  # the worker closed its end (or died)
    (length,) = _LENGTH.unpack(header)
    payload = pipe.read(length)
    if len(payload) < length:
        return None
    return pickle.loads(payload)  # from the parent process only, over a pipe


def _below_the_worker() -> None:
    """Run only on CPU time the worker leaves idle (Linux's SCHED_IDLE; elsewhere the lowest
    priority): a write never delays a request, and a worker busy all the time starves the
    writer, whose bound then drops records, counted, rather than slow the answers down.
    Measured: `bench.prediction_log` (nice 10 instead: p99 2.3x the log-off p99 at 75% busy).
    The policy ranks threads within one scheduling group: the child stays in the worker's
    session (`WriterProcess._spawn`), hence in its autogroup."""
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError:  # refused by a sandbox: the lowest priority instead
            pass
    os.nice(19)


def main() -> int:
    """The child: batches from stdin, records to the log, reports to stdout."""
    for stopping in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stopping, signal.SIG_IGN)  # the parent says when, by closing stdin
    _below_the_worker()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s prediction-log-writer[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    from monitoring.prediction_log import PredictionLog

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    reporting = threading.Lock()

    def report(kind: str) -> Callable[[int], None]:
        def write(count: int) -> None:
            with reporting:
                stdout.write(f"{kind} {count}\n".encode())
                stdout.flush()

        return write

    settings = _receive(stdin)
    if settings is None:
        return 0
    writer = PredictionLog(
        **settings, on_written=report(WRITTEN), on_dropped=report(DROPPED)
    ).start()
    while (batch := _receive(stdin)) is not None:
        writer.log(batch)
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
