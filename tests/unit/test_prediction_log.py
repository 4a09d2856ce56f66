"""The prediction log: what is logged is what is written, by day; a full buffer, a failed write
and a writer process that died are counted, never silent; the background writer and `close`
write what is buffered; the writer process ignores the stopping signals and ends with its input;
compaction leaves one file per day and source and every record once."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.answers import Answering
from monitoring import prediction_log as pl
from monitoring.log_writer import WriterProcess

FEATURES = ("distance", "dep_hour", "tail_arr_delay_last")
START = datetime(2013, 12, 30, 5, 15, tzinfo=UTC)


def batch(count: int, first: int = 0, *, day_step: int = 0, width: int = 3) -> pl.Batch:
    """`count` predictions as a worker hands them over: ids, moments (`day_step` days apart),
    row ids (every other one), scores, decisions, what was missing, the inputs (`width`)."""
    at = range(first, first + count)
    scores = [i / 100 for i in at]
    return pl.Batch(
        [pl.new_prediction_id() for _ in at],
        1_700_000_000.25,
        [START + timedelta(days=day_step * i, minutes=i) for i in at],
        "3",
        [f"UA-1545-{i}" if i % 2 else None for i in at],
        Answering("binary", threshold=0.5).answer(np.array(scores)),
        [["tail_arr_delay_last"] if i % 3 == 0 else [] for i in at],
        np.array([[1400.0 + i, 5.0, np.nan if i % 3 == 0 else 12.0][:width] for i in at]),
    )


def test_what_is_logged_is_written_once_per_day_with_every_field(tmp_path: Path) -> None:
    log = pl.PredictionLog(str(tmp_path / "log"), FEATURES)
    sent = batch(6, day_step=1)
    assert log.log(sent) == 0
    assert log.flush() == 6 and (log.written, log.dropped) == (6, 0)

    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == [f"day={(START + timedelta(days=i)).date()}" for i in range(6)]
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None
    rows = sorted(table.to_pylist(), key=lambda r: r[pl.EVENT_TIME])
    for i, row in enumerate(rows):
        assert row[pl.PREDICTION_ID] == sent.ids[i]
        assert row[pl.PREDICTED_AT] == datetime.fromtimestamp(sent.predicted_at, UTC)
        assert row[pl.EVENT_TIME] == sent.events[i]
        assert (row[pl.MODEL_VERSION], row[pl.ROW_ID]) == ("3", sent.row_ids[i])
        assert row[pl.SCORE] == sent.answers.score[i]
        assert row[pl.DECISION] == sent.answers.decision[i]
        assert row[pl.PREDICTED_CLASS] is None
        assert row[pl.MISSING] == sent.missing[i] and row[pl.SOURCE] == "service"
        for position, feature in enumerate(FEATURES):
            got, want = row[pl.input_column(feature)], sent.inputs[i][position]
            assert got == want or (got != got and want != want)  # NaN stays NaN
    one_day = pl.read_log(str(tmp_path / "log"), days=[str(START.date())])
    assert one_day is not None and one_day.num_rows == 1
    assert pl.read_log(str(tmp_path / "nothing")) is None


def test_a_multiclass_answer_is_logged_as_its_class(tmp_path: Path) -> None:
    answering = Answering("multiclass", classes=("dry", "light", "heavy"))
    answers = answering.answer(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    sent = batch(2)._replace(answers=answers)
    log = pl.PredictionLog(str(tmp_path / "log"), FEATURES)
    log.log(sent)
    log.flush()
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None
    logged = dict(zip(table.column(pl.PREDICTION_ID).to_pylist(), table.to_pylist(), strict=True))
    assert [logged[i][pl.PREDICTED_CLASS] for i in sent.ids] == ["dry", "heavy"]
    assert [logged[i][pl.DECISION] for i in sent.ids] == [None, None]


def test_a_full_buffer_drops_the_newest_and_counts_them(tmp_path: Path) -> None:
    counted: list[int] = []
    log = pl.PredictionLog(str(tmp_path / "log"), FEATURES, capacity=5, on_dropped=counted.append)
    sent = batch(8)
    assert log.log(sent) == 3
    assert (log.dropped, counted) == (3, [3])
    assert log.flush() == 5  # the first five, kept
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None and set(table.column(pl.PREDICTION_ID).to_pylist()) == set(
        sent.ids[:5]
    )


def test_a_failed_write_is_counted_and_the_caller_never_sees_it(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    log = pl.PredictionLog(str(blocked / "log"), FEATURES)
    log.log(batch(4))
    assert log.flush() == 0
    assert (log.written, log.dropped) == (0, 4)


def test_the_background_writer_and_close_write_what_is_buffered(tmp_path: Path) -> None:
    quick = pl.PredictionLog(str(tmp_path / "quick"), FEATURES, flush_interval_s=0.05).start()
    try:
        quick.log(batch(3))
        deadline = time.monotonic() + 10
        while quick.written < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert quick.written == 3  # written without anyone calling flush
    finally:
        quick.close()
    # a long interval: only close (the SIGTERM path) writes
    slow = pl.PredictionLog(str(tmp_path / "slow"), FEATURES, flush_interval_s=3600).start()
    slow.log(batch(4))
    assert slow.written == 0
    slow.close(timeout_s=5)
    assert slow.written == 4
    table = pl.read_log(str(tmp_path / "slow"))
    assert table is not None and table.num_rows == 4


def test_enough_waiting_records_start_a_write_before_the_interval(tmp_path: Path) -> None:
    log = pl.PredictionLog(
        str(tmp_path / "log"), FEATURES, flush_rows=5, flush_interval_s=3600
    ).start()
    try:
        log.log(batch(5))
        deadline = time.monotonic() + 10
        while log.written < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.written == 5
    finally:
        log.close()


@pytest.mark.parametrize("capacity", [0, -1])
def test_settings_refuse_a_log_that_could_hold_nothing(capacity: int) -> None:
    from configs.settings import PredictionLogConfig

    with pytest.raises(ValueError, match="capacity"):
        PredictionLogConfig(capacity=capacity)


@pytest.mark.slow
def test_the_writer_process_writes_what_a_worker_hands_it_and_stops_on_close(
    tmp_path: Path,
) -> None:
    written: list[int] = []
    writer = WriterProcess(
        str(tmp_path / "log"), FEATURES, "service", flush_interval_s=3600, on_written=written.append
    ).start()
    child = writer.child_pid
    sent = [batch(3), batch(4, first=3)]
    assert [writer.log(b) for b in sent] == [0, 0]
    writer.close(timeout_s=30)
    assert (writer.written, writer.dropped, writer.in_flight, sum(written)) == (7, 0, 0, 7)
    assert child is not None and not _alive(child), "the writer process outlived close"
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None
    by_id = {row[pl.PREDICTION_ID]: row for row in table.to_pylist()}
    assert set(by_id) == {i for b in sent for i in b.ids}
    first = by_id[sent[0].ids[1]]
    assert first[pl.ROW_ID] == sent[0].row_ids[1] and first[pl.DECISION] is False
    assert first[pl.input_column("distance")] == 1401.0


@pytest.mark.slow
def test_a_writer_past_capacity_drops_whole_batches_and_counts_them(tmp_path: Path) -> None:
    writer = WriterProcess(str(tmp_path / "log"), FEATURES, "service", capacity=5).start()
    assert writer.log(batch(4)) == 0
    assert writer.log(batch(3, first=4)) == 3  # 4 on their way + 3 > 5
    writer.close(timeout_s=30)
    assert (writer.written, writer.dropped) == (4, 3)


@pytest.mark.slow
def test_a_writer_process_that_dies_is_replaced_and_its_loss_counted(tmp_path: Path) -> None:
    writer = WriterProcess(str(tmp_path / "log"), FEATURES, "service", flush_interval_s=3600)
    writer.start()
    held = batch(3)
    writer.log(held)
    deadline = time.monotonic() + 10  # the child has it once the feeder has nothing waiting
    while writer._waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    first = writer.child_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # noticed at once, with nothing more to write
    deadline = time.monotonic() + 20
    while writer.child_pid == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.child_pid != first, "no new writer process"
    later = batch(2, first=3)
    writer.log(later)
    writer.close(timeout_s=30)
    assert (writer.written, writer.dropped, writer.in_flight) == (2, 3, 0)
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None and set(table.column(pl.PREDICTION_ID).to_pylist()) == set(later.ids)


@pytest.mark.slow
def test_a_writer_process_ignores_the_terminal_s_signals_and_ends_with_its_input(
    tmp_path: Path,
) -> None:
    writer = WriterProcess(str(tmp_path / "log"), FEATURES, "service", flush_interval_s=3600)
    writer.start()
    writer.log(batch(3))
    child = writer.child_pid
    assert child is not None
    time.sleep(0.5)
    os.kill(child, signal.SIGTERM)  # as a process manager stopping the group would
    os.kill(child, signal.SIGINT)
    time.sleep(0.5)
    assert _alive(child)
    writer.close(timeout_s=30)
    assert (writer.written, writer.dropped) == (3, 0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_writer_process_yields_to_the_worker_within_the_worker_s_scheduling_group(
    tmp_path: Path,
) -> None:
    """SCHED_IDLE ranks threads within one scheduling group; a child in a session of its own
    gets an autogroup of its own and competes with the worker as an equal (30-50 ms stalls of
    the worker at every flush, measured). Out of the worker's process group, though, so that
    signals sent to that group do not reach it."""
    writer = WriterProcess(str(tmp_path / "log"), FEATURES, "service", flush_interval_s=3600)
    writer.start()
    child = writer.child_pid
    assert child is not None
    try:
        deadline = time.monotonic() + 20
        while os.sched_getscheduler(child) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.sched_getscheduler(child) == os.SCHED_IDLE
        assert os.getsid(child) == os.getsid(0), "the writer left the worker's session"
        assert os.getpgid(child) == child != os.getpgid(0)
        # Where autogroups are in force, the same group as the worker's (the file is empty where
        # they are not, e.g. in a cgroup of its own: nothing then ranks the two apart).
        assert _autogroup(child) == _autogroup(os.getpid())
    finally:
        writer.close(timeout_s=30)


def _autogroup(pid: int) -> str | None:
    """The scheduling autogroup of a process, or None where the kernel applies none."""
    path = Path(f"/proc/{pid}/autogroup")
    words = path.read_text().split() if path.exists() else []
    return words[0] if words else None


def _sorted(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas().sort_values(pl.PREDICTION_ID).reset_index(drop=True)
    return frame[sorted(frame.columns)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_compaction_leaves_one_file_per_day_and_source_and_every_record_once(
    tmp_path: Path,
) -> None:
    location = str(tmp_path / "log")
    for flushed in (batch(4), batch(3, first=4)):  # two flushes of the service: two files
        log = pl.PredictionLog(location, FEATURES)
        log.log(flushed)
        log.flush()
    shadow = pl.PredictionLog(location, FEATURES[:2], source="shadow")  # fewer inputs
    shadow.log(batch(2, width=2))
    shadow.flush()
    day = tmp_path / "log" / f"day={START.date()}"
    assert len(list(day.glob("*.parquet"))) == 3
    before = pl.read_log(location)

    (done,) = pl.compact(location)
    assert (done.files_before, done.files_after, done.records) == (3, 2, 9)
    files = sorted(path.name for path in day.iterdir())
    assert [name.rsplit("-", 1)[0] for name in files] == ["compacted-service", "compacted-shadow"]
    after = pl.read_log(location)
    assert before is not None and after is not None
    pd.testing.assert_frame_equal(_sorted(after), _sorted(before))
    assert pl.compact(location) == []  # nothing left to do
    # a compaction interrupted after writing and before deleting: each record read once
    for name in files:
        (day / f"part-copy-of-{name}").write_bytes((day / name).read_bytes())
    assert pl.read_log(location).num_rows == 9
    (again,) = pl.compact(location)
    assert again.records == 9 and len(list(day.glob("*.parquet"))) == 2
