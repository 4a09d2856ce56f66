"""A request the schema refuses is logged as one WARNING naming the fields, not an ERROR with a
traceback; any other failure keeps its level and traceback."""

from __future__ import annotations

import logging
import sys

import pydantic
import pytest

from serving.logs import ClientMistakesAsWarnings
from usecases.synthetic.request import MeterReading


def record_of(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "bentoml._internal.server.http_app",
        logging.ERROR,
        __file__,
        1,
        "Exception on %s [%s]",
        ("/predict", "POST"),
        exc_info,
    )


def test_a_validation_error_becomes_one_warning_line() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        MeterReading.model_validate({"meter_id": "m", "facility_id": "S1", "extra": 1})
    record = record_of(refused.value)
    assert ClientMistakesAsWarnings().filter(record) is True
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        "client mistake on /predict [POST]: 3 validation error(s) in extra, meter_id, reading_at"
    )


def test_other_failures_stay_errors_with_their_traceback() -> None:
    record = record_of(RuntimeError("the model broke"))
    assert ClientMistakesAsWarnings().filter(record) is True
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Exception on /predict [POST]"
