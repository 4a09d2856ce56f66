"""The prediction log: what is recorded is what is written, by day; a full buffer and a failed
write are counted, never silent; the background writer and `close` write what is buffered."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring import prediction_log as pl

FEATURES = ("distance", "dep_hour", "tail_arr_delay_last")
START = datetime(2013, 12, 30, 5, 15, tzinfo=UTC)


def records(count: int, *, day_step: int = 0) -> list[pl.Record]:
    return [
        pl.Record(
            prediction_id=pl.new_prediction_id(),
            predicted_at=1_700_000_000.0 + i,
            event_time=START + timedelta(days=day_step * i, minutes=i),
            model_version="3",
            row_id=f"UA-1545-{i}" if i % 2 else None,
            score=i / (count + 1),
            decision=i / (count + 1) >= 0.5,
            missing=["tail_arr_delay_last"] if i % 3 == 0 else [],
            inputs=[1400.0 + i, 5.0, float("nan") if i % 3 == 0 else 12.0],
        )
        for i in range(count)
    ]


def test_what_is_recorded_is_written_once_per_day_with_every_field(tmp_path: Path) -> None:
    log = pl.PredictionLog(str(tmp_path / "log"), FEATURES)
    sent = records(6, day_step=1)
    assert log.record(sent) == 0
    assert log.flush() == 6 and (log.written, log.dropped) == (6, 0)

    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == [f"day={(START + timedelta(days=i)).date()}" for i in range(6)]
    table = pl.read_log(str(tmp_path / "log"))
    assert table is not None
    rows = sorted(table.to_pylist(), key=lambda r: r[pl.PREDICTED_AT])
    for row, record in zip(rows, sent, strict=True):
        assert row[pl.PREDICTION_ID] == record.prediction_id
        assert row[pl.EVENT_TIME] == record.event_time
        assert (row[pl.MODEL_VERSION], row[pl.ROW_ID]) == ("3", record.row_id)
        assert (row[pl.SCORE], row[pl.DECISION]) == (record.score, record.decision)
        assert row[pl.MISSING] == record.missing and row[pl.SOURCE] == "service"
        for position, feature in enumerate(FEATURES):
            got, want = row[pl.input_column(feature)], record.inputs[position]
            assert got == want or (got != got and want != want)  # NaN stays NaN
    one_day = pl.read_log(str(tmp_path / "log"), days=[str(START.date())])
    assert one_day is not None and one_day.num_rows == 1
    assert pl.read_log(str(tmp_path / "nothing")) is None


def test_a_full_buffer_drops_the_newest_and_counts_them(tmp_path: Path) -> None:
    counted: list[int] = []
    log = pl.PredictionLog(str(tmp_path / "log"), FEATURES, capacity=5, on_dropped=counted.append)
    assert log.record(records(8)) == 3
    assert (log.dropped, counted) == (3, [3])
    assert log.flush() == 5  # the first five, kept


def test_a_failed_write_is_counted_and_the_caller_never_sees_it(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    log = pl.PredictionLog(str(blocked / "log"), FEATURES)
    log.record(records(4))
    assert log.flush() == 0
    assert (log.written, log.dropped) == (0, 4)


def test_the_background_writer_and_close_write_what_is_buffered(tmp_path: Path) -> None:
    quick = pl.PredictionLog(str(tmp_path / "quick"), FEATURES, flush_interval_s=0.05).start()
    try:
        quick.record(records(3))
        deadline = time.monotonic() + 10
        while quick.written < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert quick.written == 3  # written without anyone calling flush
    finally:
        quick.close()
    # a long interval: only close (the SIGTERM path) writes
    slow = pl.PredictionLog(str(tmp_path / "slow"), FEATURES, flush_interval_s=3600).start()
    slow.record(records(4))
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
        log.record(records(5))
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
