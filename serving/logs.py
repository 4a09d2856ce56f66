"""Structured logs for the serving worker: one JSON object per line, each with the model version.

BentoML configures the worker's logging (plain text) before the service is built; the service
then calls `use_json_logs`, which keeps BentoML's handlers and their request-tracing filter
and swaps only the formatter, so access lines, warnings and our own lines all come out as
JSON that a log pipeline (CloudWatch, Loki, ...) can query by `model_version`.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Attributes BentoML's tracing filter adds only to build its text line: not worth a field.
_TEXT_ONLY_ATTRS = ("levelname_bracketed", "trace_msg", "component", "color_message")
SERVICE_LOGGER = "serving"
# Where BentoML logs a failed request, with its traceback, whatever the cause.
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientMistakesAsWarnings(logging.Filter):
    """A request refused by the schema (a 400) is the client's mistake, not the service's: one
    WARNING line naming the route and the fields, instead of an ERROR with a traceback (which
    would bury real failures and page someone for every bad request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            fields = sorted({".".join(map(str, e["loc"])) or "(body)" for e in error.errors()})
            record.msg = "client mistake on %s [%s]: %d validation error(s) in %s"
            where = tuple(record.args)[:2] if isinstance(record.args, tuple) else ("?", "?")
            record.args = (*where, error.error_count(), ", ".join(fields[:5]))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


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
    http = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientMistakesAsWarnings) for f in http.filters):
        http.addFilter(ClientMistakesAsWarnings())
    # The service's own lines (one per request) are INFO; BentoML leaves the root at WARNING.
    logging.getLogger(SERVICE_LOGGER).setLevel(logging.INFO)


class RequestIds:
    """An id for each request to `paths`, on every log line written while it is handled
    (BentoML's `request_id` field), without an OpenTelemetry span per request.

    BentoML takes the request id from its tracing span; a span per prediction costs more than
    the prediction at a few hundred requests per second, so the API routes are left out of
    tracing (`serving.trace_requests: false`) and get their id here: the client's
    `X-Request-ID` when it is a number, else a random 63-bit one.
    """

    def __init__(self, app: Any, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            from bentoml._internal.context import trace_context

            given = dict(scope["headers"]).get(b"x-request-id", b"")
            trace_context.request_id = int(given) if given.isdigit() else random.getrandbits(63)
        await self.app(scope, receive, send)
