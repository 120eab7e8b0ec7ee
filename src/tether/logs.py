"""The one logging setup, for ``tether serve`` and every ``tether agent``.

:func:`configure` applies one :func:`logging.config.dictConfig` to the root logger:

* ``text``: ``time level logger: message`` lines, for a terminal;
* ``json``: one JSON object per line (python-json-logger, encoded with msgspec like the
  rest of Tether), with ``level``, ``logger``, ``message``, ``time`` (ISO 8601, UTC),
  any ``extra`` fields of the call, and the ``request_id`` / ``device_id`` of the work
  being logged when they are known, for a log shipper.

The ids come from :data:`request_id` and :data:`device_id`, two context variables that
request handlers and device sessions set (:func:`bind`); a call may also name them
itself with ``extra={"device_id": ...}``. Context variables follow asyncio tasks, so
concurrent requests never see each other's ids.

The HTTP access log is the ``tether.access`` logger (:data:`ACCESS_LOGGER`), configured
here like every other logger so that it follows the same format and level.

This module imports only the standard library at import time: the CLI loads it for
every agent, and ``tether --version`` must stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: The logger the HTTP access log is written to.
ACCESS_LOGGER = "tether.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The fields of a JSON line, in order, before any ``extra`` the call adds and ``time``.
JSON_FIELDS = ("levelname", "name", "message")
JSON_RENAMES = {"levelname": "level", "name": "logger"}
#: Chatty libraries, kept at WARNING unless the level is DEBUG.
QUIET_LIBRARIES = ("alembic", "aiosqlite")

request_id: ContextVar[str | None] = ContextVar("tether_request_id", default=None)
device_id: ContextVar[str | None] = ContextVar("tether_device_id", default=None)


@contextlib.contextmanager
def bind(*, request: str | None = None, device: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry these ids (those given; the others keep theirs)."""
    tokens = []
    if request is not None:
        tokens.append((request_id, request_id.set(request)))
    if device is not None:
        tokens.append((device_id, device_id.set(device)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextIds(logging.Filter):
    """Add ``request_id`` and ``device_id`` from the context to a record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("device_id", device_id)):
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True


def config(level: str = "info", log_format: LogFormat = "text") -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` dictionary for this level and format."""
    level_name = level.upper()
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.msgspec.MsgspecFormatter",
            "fmt": list(JSON_FIELDS),
            "rename_fields": JSON_RENAMES,
            "timestamp": "time",
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    quiet = "DEBUG" if level_name == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextIds}},
        "formatters": {"main": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "loggers": {
            ACCESS_LOGGER: {"level": level_name},
            **{name: {"level": quiet} for name in QUIET_LIBRARIES},
        },
        "root": {"level": level_name, "handlers": ["stderr"]},
    }


def configure(level: str = "info", log_format: LogFormat = "text") -> None:
    """Apply the one logging setup (replacing any earlier one in this process)."""
    logging.config.dictConfig(config(level, log_format))
