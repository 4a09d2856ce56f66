"""Structured logs for the serving worker: one JSON object per line, each with the model version.

BentoML configures the worker's logging (plain text) before the service is built; the service
then calls `use_json_logs`, which keeps BentoML's handlers and their request-tracing filter
and swaps only the formatter, so access lines, warnings and our own lines all come out as
JSON that a log pipeline (CloudWatch, Loki, ...) can query by `model_version`.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Attributes BentoML's tracing filter adds only to build its text line: not worth a field.
_TEXT_ONLY_ATTRS = ("levelname_bracketed", "trace_msg", "component", "color_message")
SERVICE_LOGGER = "serving"


def json_formatter(model_version: str) -> JsonFormatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"model_version": model_version},
        reserved_attrs=[*RESERVED_ATTRS, *_TEXT_ONLY_ATTRS],
    )


def use_json_logs(model_version: str) -> None:
    """Format every handler of this process as JSON carrying `model_version`."""
    formatter = json_formatter(model_version)
    handlers = {
        *logging.getLogger().handlers,
        *logging.getLogger("bentoml").handlers,
        *logging.getLogger("uvicorn.error").handlers,
    }
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.captureWarnings(True)  # library warnings become JSON lines too, not bare stderr
    # The service's own lines (one per request) are INFO; BentoML leaves the root at WARNING.
    logging.getLogger(SERVICE_LOGGER).setLevel(logging.INFO)
