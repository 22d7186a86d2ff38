"""One JSON object per log line (LOG_FORMAT=json), for the application and for gunicorn's own lines.

Standard library only, and outside the ``app`` package: gunicorn's master loads it with
gunicorn.conf.py, before any worker patches the standard library with gevent, and importing
the application there would import ``ssl`` and ``threading`` too early.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# The fields an access record may carry into a JSON line; nothing else a record holds gets in.
ACCESS_FIELDS = (
    "kind",
    "outcome",
    "method",
    "path",
    "status",
    "duration_ms",
    "remote_addr",
    "user_id",
    "sid",
    "namespace",
    "transport",
    "event",
    "code",
    "reason",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ACCESS_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def gunicorn_logconfig(level: str) -> dict:
    """gunicorn's ``logconfig_dict``: its error log (master and workers) as JSON on stderr, through
    the root logger, which the application's own records reach too (one handler, no duplicates).
    gunicorn's access log, when ACCESS_LOG turns it on, goes the same way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "formatters": {"json": {"()": JsonFormatter}},
    }


def log_uncaught(exc_type, value, traceback) -> None:
    """``sys.excepthook``: an exception nothing caught is one JSON line, not a bare traceback."""
    logging.getLogger("uncaught").critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, value, traceback))


def print_greenlet_exception(context, exc_type, value, traceback) -> None:
    """gevent's hub prints a failed greenlet's traceback and context to stderr; log it instead.

    The context is named by its type only: gevent's rendering of a WSGI environ holds addresses.
    """
    if exc_type is None:
        return
    logging.getLogger("gevent.hub").error(
        "%s failed with %s",
        type(context).__name__ if context is not None else "greenlet",
        getattr(exc_type, "__name__", "exception"),
        exc_info=(exc_type, value, traceback) if isinstance(value, BaseException) else None,
    )


def route_stray_output(*, greenlets: bool = False) -> None:
    """What would reach stderr beside logging goes through it: warnings, uncaught exceptions and,
    with ``greenlets`` (in a gevent worker, whose hub this then is), failed greenlets."""
    logging.captureWarnings(True)
    sys.excepthook = log_uncaught
    if greenlets:
        import gevent

        # An instance attribute: the hub calls self.print_exception(context, type, value, traceback).
        setattr(gevent.get_hub(), "print_exception", print_greenlet_exception)  # noqa: B010
