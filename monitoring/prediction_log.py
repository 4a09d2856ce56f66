"""The prediction log: every prediction the service answers and every batch score, recorded to
the lake for the monitor (drift, live performance) and for lineage.

One parquet file per flush and day, under `<predictions>/day=YYYY-MM-DD/` (the day of the
moment each prediction is about, its event time: a replay of past months lands in their own
days). A record holds the prediction id (also returned to the client), when it was made, the
model version, the use case's row id when the request carried one, the inputs exactly as the
model saw them (online features included, one `input__<feature>` column each), the answer's
score (`models.answers`: P(positive), the likeliest class's probability, or the value), the
decision (a yes/no target) or the class (a multiclass one), and the features that were missing.

`PredictionLog` is a bounded buffer and its writer: `log` appends a `Batch` (a request's or a
batch score's predictions, column by column) and returns; a background thread writes what is
buffered every `flush_interval_s`, or as soon as `flush_rows` are waiting. The service runs it
in a writer process of each worker's own (`log_writer`), batch scoring in its own process.
Nothing is lost silently: predictions refused because the buffer is full, and those of a write
that failed, are counted (`dropped`, exported on `/metrics` by the service), and `close`
(SIGTERM) writes what is left. `compact` rewrites a day as one file per source (the monitor
runs it first); `read_log` counts each record once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.answers import Answers
from storage import files as fs

log = logging.getLogger(__name__)

# Column names of a record; the inputs follow as INPUT_PREFIX + feature name.
PREDICTION_ID = "prediction_id"
PREDICTED_AT = "predicted_at"
EVENT_TIME = "event_time"
MODEL_VERSION = "model_version"
ROW_ID = "row_id"
SCORE = "score"
DECISION = "decision"
PREDICTED_CLASS = "predicted_class"
MISSING = "missing_features"
SOURCE = "source"  # who made the prediction: one of the three below
SERVICE_SOURCE, BATCH_SOURCE = "service", "batch"
# A challenger scored in shadow (serving.shadow_challenger): its records carry this source and
# the id of the champion's answer they shadow plus this suffix.
SHADOW_SOURCE = "shadow"
SHADOW_ID_SUFFIX = "-shadow"
INPUT_PREFIX = "input__"
DAY_PARTITION = "day"


def input_column(feature: str) -> str:
    return f"{INPUT_PREFIX}{feature}"


def new_prediction_id() -> str:
    """128 random bits as 32 hex digits (uuid4's format without its version bits, at a
    quarter of its cost: the service makes one per item)."""
    return os.urandom(16).hex()


class Batch(NamedTuple):
    """Predictions made by one model version at one moment (a request's, a batch score's),
    column by column: what a worker hands to the log, cheap to pickle (`log_writer`) and to
    turn into a table (no object per prediction)."""

    ids: Sequence[str]
    predicted_at: float  # seconds since the epoch, UTC
    events: Sequence[datetime]  # aware: the moments the predictions are about
    version: str
    row_ids: Sequence[str | None]
    answers: Answers
    missing: Sequence[Sequence[str]]
    inputs: Any  # the model's input matrix: one row per prediction, in `features` order

    @property
    def size(self) -> int:
        return len(self.ids)

    def head(self, count: int) -> Batch:
        """The first `count` predictions."""
        answers = self.answers
        return Batch(
            self.ids[:count],
            self.predicted_at,
            self.events[:count],
            self.version,
            self.row_ids[:count],
            Answers(
                score=answers.score[:count],
                decision=None if answers.decision is None else answers.decision[:count],
                label=None if answers.label is None else answers.label[:count],
            ),
            self.missing[:count],
            self.inputs[:count],
        )


@dataclass
class PredictionLog:
    """A bounded buffer of batches written in the background to `location` (local or s3://)."""

    location: str
    features: Sequence[str]
    source: str = SERVICE_SOURCE
    capacity: int = 100_000
    flush_rows: int = 5_000
    flush_interval_s: float = 5.0
    on_dropped: Callable[[int], None] = lambda count: None
    on_written: Callable[[int], None] = lambda count: None
    written: int = 0
    dropped: int = 0
    _buffer: list[Batch] = field(default_factory=list)
    _buffered: int = 0  # predictions in the buffer
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _flushing: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def log(self, batch: Batch) -> int:
        """Buffer `batch` (never blocks on I/O); returns how many of its predictions were
        dropped, the buffer full (the newest go first)."""
        with self._lock:
            room = max(0, self.capacity - self._buffered)
            kept = batch if batch.size <= room else batch.head(room)
            if kept.size:
                self._buffer.append(kept)
                self._buffered += kept.size
            waiting = self._buffered
        lost = batch.size - kept.size
        if lost:
            self._count_dropped(lost, "the prediction log's buffer is full")
        if waiting >= self.flush_rows:
            self._wake.set()
        return lost

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the background writer and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write what is buffered now, one file per day; returns the predictions written."""
        with self._flushing:
            with self._lock:
                batches, self._buffer = self._buffer, []
                count, self._buffered = self._buffered, 0
            if not count:
                return 0
            try:
                table = to_table(batches, self.features, self.source)
                for day, rows in _by_day(table):
                    self._write(day, rows)
            except Exception:
                log.exception("prediction log: a write to %s failed", self.location)
                self._count_dropped(count, "a write failed")
                return 0
            self.written += count
            self.on_written(count)
            return count

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        self.on_dropped(count)
        log.warning("prediction log: %d record(s) dropped: %s", count, why)

    def _write(self, day: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        target = fs.join(self.location, f"{DAY_PARTITION}={day}", name)
        fs.write_bytes(target, sink.getvalue().to_pybytes())


def _by_day(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """The table's rows by the UTC day of the moment predicted (YYYY-MM-DD)."""
    days = pc.cast(table.column(EVENT_TIME), pa.date32())
    for day in pc.unique(days).to_pylist():
        yield day.isoformat(), table.filter(pc.equal(days, day))


def to_table(batches: Sequence[Batch], features: Sequence[str], source: str) -> pa.Table:
    """The log's table of `batches`, column by column: lists and arrays joined, converted by
    Arrow in C (a Python object per prediction would cost ten times more)."""

    def joined(column: Callable[[Batch], Sequence[Any] | None]) -> list[Any]:
        values: list[Any] = []
        for batch in batches:
            part = column(batch)
            values.extend([None] * batch.size if part is None else part)
        return values

    at_us = np.concatenate(
        [np.full(b.size, round(b.predicted_at * 1e6), np.int64) for b in batches]
    )
    inputs = np.vstack(
        [np.asarray(b.inputs, np.float64).reshape(b.size, len(features)) for b in batches]
    )
    columns: dict[str, pa.Array] = {
        PREDICTION_ID: pa.array(joined(lambda b: b.ids), pa.string()),
        PREDICTED_AT: pa.array(at_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        EVENT_TIME: pa.array(joined(lambda b: b.events), pa.timestamp("us", tz="UTC")),
        MODEL_VERSION: pa.array(joined(lambda b: [b.version] * b.size), pa.string()),
        ROW_ID: pa.array(joined(lambda b: b.row_ids), pa.string()),
        SCORE: pa.array(joined(lambda b: b.answers.score), pa.float64()),
        DECISION: pa.array(joined(lambda b: b.answers.decision), pa.bool_()),
        PREDICTED_CLASS: pa.array(joined(lambda b: b.answers.label), pa.string()),
        MISSING: pa.array(joined(lambda b: b.missing), pa.list_(pa.string())),
        SOURCE: pa.array([source] * sum(b.size for b in batches), pa.string()),
    }
    for position, feature in enumerate(features):
        columns[input_column(feature)] = pa.array(
            np.ascontiguousarray(inputs[:, position]), pa.float64()
        )
    return pa.table(columns)


def read_log(location: str, days: Sequence[str] | None = None) -> pa.Table | None:
    """Every record logged under `location` (only `days`, YYYY-MM-DD, when given), each once
    (a compaction caught between its write and its deletes leaves a record in two files);
    None when nothing was logged there yet."""
    tables = [
        _read_part(part)
        for folder in _day_folders(location, days)
        for part in _parts(fs.join(location, folder))
    ]
    if not tables:
        return None
    return _once_each(pa.concat_tables(tables, promote_options="default"))


@dataclass(frozen=True)
class Compacted:
    """What `compact` did to one day: the files it read and the ones it wrote in their place."""

    day: str
    files_before: int
    files_after: int
    records: int


def compact(location: str, days: Sequence[str] | None = None) -> list[Compacted]:
    """One file per day and source: every day (only `days` when given) with more files than
    sources is rewritten, part by part (a day is never held in memory whole), each record once.

    Safe beside writers and readers: parts written meanwhile are left for the next compaction;
    the new files are in place before the parts they replace are deleted, and `read_log` counts
    a record found in both once. The workers write a part per flush, so a busy day holds many:
    the monitor compacts before it reads (`pipelines monitor`, locally and on AWS)."""
    done = []
    for folder in _day_folders(location, days):
        day_location = fs.join(location, folder)
        parts = _parts(day_location)
        compacted = [part for part in parts if fs.name(part).startswith(COMPACTED_PREFIX)]
        if len(parts) <= 1 or (len(compacted) == len(parts) and _one_per_source(compacted)):
            continue
        written = _rewrite_by_source(day_location, parts)
        for part in parts:
            fs.delete_file(part)
        done.append(
            Compacted(folder.split("=", 1)[1], len(parts), len(written), sum(written.values()))
        )
        log.info("prediction log: %s: %d files compacted into %d", folder, len(parts), len(written))
    return done


# A compacted day's file per source: `compacted-<source>-<ns>.parquet`; a worker's flush
# writes `part-<ns>-<random>.parquet`.
COMPACTED_PREFIX = "compacted-"


def _rewrite_by_source(day_location: str, parts: list[str]) -> dict[str, int]:
    """Stream `parts` into one new file per source (their columns united); records per file."""
    schema = pa.unify_schemas(
        [_read_part(part, schema_only=True) for part in parts], promote_options="permissive"
    )
    seen: set[str] = set()
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as files:
        writers: dict[str, pq.ParquetWriter] = {}
        for part in parts:
            table = _read_part(part)
            for source in pc.unique(table.column(SOURCE)).to_pylist():
                rows = table.filter(pc.equal(table.column(SOURCE), source))
                ids = rows.column(PREDICTION_ID).to_pylist()
                fresh = [i for i, prediction_id in enumerate(ids) if prediction_id not in seen]
                seen.update(ids)
                if not fresh:
                    continue
                if source not in writers:
                    name = f"{COMPACTED_PREFIX}{source}-{time.time_ns()}.parquet"
                    stream = files.enter_context(fs.open_output(fs.join(day_location, name)))
                    writers[source] = files.enter_context(
                        pq.ParquetWriter(stream, schema, compression="zstd")
                    )
                writers[source].write_table(_conform(rows.take(fresh), schema))
                counts[source] = counts.get(source, 0) + len(fresh)
    return counts


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns, in its order: a column it lacks is null throughout."""
    columns = [
        table.column(column.name).cast(column.type)
        if column.name in table.column_names
        else pa.nulls(table.num_rows, column.type)
        for column in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _one_per_source(compacted: list[str]) -> bool:
    sources = [fs.name(part).removeprefix(COMPACTED_PREFIX).rsplit("-", 1)[0] for part in compacted]
    return len(set(sources)) == len(sources)


def logged_days(location: str) -> list[str]:
    """The days (YYYY-MM-DD) with predictions logged under `location`, oldest first."""
    return [folder.split("=", 1)[1] for folder in _day_folders(location, None)]


def _day_folders(location: str, days: Sequence[str] | None) -> list[str]:
    # A listing only: asking whether the log's root is a folder would read an object named
    # like it (S3's HEAD), outside the prefix a role may read (`prediction-log/*`).
    return sorted(
        name
        for name in fs.children(location)
        if name.startswith(f"{DAY_PARTITION}=") and (days is None or name.split("=", 1)[1] in days)
    )


def _parts(day_location: str) -> list[str]:
    return sorted(
        fs.join(day_location, name)
        for name in fs.children(day_location)
        if name.endswith(".parquet") and not name.startswith(".")
    )


def _read_part(location: str, *, schema_only: bool = False) -> Any:
    data = pa.BufferReader(fs.read_bytes(location))
    return pq.read_schema(data) if schema_only else pq.read_table(data)


def _once_each(table: pa.Table) -> pa.Table:
    """`table` without a second record of any prediction id (the first one kept)."""
    ids = table.column(PREDICTION_ID)
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return table
    numbered = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    first = numbered.group_by(PREDICTION_ID, use_threads=False).aggregate([("_row", "min")])
    return table.take(np.sort(first.column("_row_min").to_numpy()))
