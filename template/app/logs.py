"""Log output: one JSON object per line (or plain text), each carrying the request id.

`configure(settings)` runs when the app starts, after the server has set up its own logging,
so it decides how every line looks, Uvicorn's included, and turns Uvicorn's access log off:
the app writes its own (`app.observability`), with the route and the statement count.
"""

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from asgi_correlation_id import correlation_id

from app.config import Settings

HANDLER_NAME = "app"
# The attributes every LogRecord has; anything else was passed as `extra=` and is data.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    # Uvicorn's message again, with terminal colours.
    "color_message",
}
# What TextFormatter writes; naming asctime makes logging fill it in.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request id] %(message)s"


def request_id() -> str | None:
    """The id of the request being served, or None outside one."""
    return correlation_id.get()


class RequestIdRecords:
    """A log record factory that stamps each record with the request id when it is made,
    so every handler sees it (a formatter, pytest's caplog, an error tracker)."""

    def __init__(self, factory: Callable[..., logging.LogRecord]) -> None:
        self.factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.factory(*args, **kwargs)
        record.request_id = correlation_id.get()
        return record


def stamp_request_ids() -> None:
    """Install `RequestIdRecords` once per process."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, RequestIdRecords):
        logging.setLogRecordFactory(RequestIdRecords(factory))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in RECORD_ATTRIBUTES:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Time, level, logger, [request id] and message, for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # "-" outside a request; records made by logging.makeLogRecord have no id at all.
        record_id = getattr(record, "request_id", None) or "-"
        return f"{record.asctime} {record.levelname} {record.name} [{record_id}] {record.message}"


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time, as logging's last resort does, so a
    replaced stderr (a test's capture, a reloader) is followed, never written after close."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def log_format(settings: Settings) -> str:
    # `fastapi dev` sets FASTAPI_ENV=development: a person reads that terminal. Everywhere
    # else (`fastapi run`, a container, a service) a collector reads the lines: JSON.
    if settings.log_format:
        return settings.log_format
    return "text" if os.environ.get("FASTAPI_ENV") == "development" else "json"


def configure(settings: Settings) -> None:
    """Send every log line to stderr in LOG_FORMAT at LOG_LEVEL; Uvicorn's access log off."""
    handler = StderrHandler()
    handler.name = HANDLER_NAME
    # On the handler too: Uvicorn's loggers set levels of their own.
    handler.setLevel(settings.log_level)
    handler.setFormatter(JSONFormatter() if log_format(settings) == "json" else TextFormatter())
    root = logging.getLogger()
    # Ours from an earlier start, and a plain console handler put there by someone else
    # (alembic.ini's, when migrations ran at startup; logging.basicConfig's): each would
    # write every line a second time.
    for old in root.handlers[:]:
        if old.name == HANDLER_NAME or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Uvicorn's loggers keep handlers of their own: let their lines through ours instead.
    server = logging.getLogger("uvicorn")
    server.handlers.clear()
    server.propagate = True
    # With no handler anywhere above it, Uvicorn does not even format its access lines.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
