"""Log output (text, or one JSON object per line with LOG_FORMAT=json) and the access log.

The access log has one record per HTTP request, per socket connection attempt and
disconnection, and per refused socket event. Records carry ids, names and codes only:
never a message body, a password or a token.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request, session

from logjson import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")

access_log = logging.getLogger("switchboard.access")


def configure_logging(log_format: str) -> None:
    """Log INFO and above to stderr, as text or as JSON lines.

    Handlers someone else installed (a test runner's capture) are left alone.
    """
    if log_format not in LOG_FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    # The server's own line per request (query string included) would repeat the access log's.
    logging.getLogger("geventwebsocket.handler").setLevel(logging.WARNING)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                handler.setFormatter(JsonFormatter())


def library_logger(name: str, verbose: bool) -> logging.Logger:
    """A logger for python-socketio or python-engineio to use: given none, each adds a stream
    handler of its own, whose lines (plain text, and repeated by the root handler) bypass LOG_FORMAT."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    return logger


def log_access(kind: str, message: str, **fields) -> None:
    """One access record: ``message`` for text logs, ``fields`` as JSON keys."""
    access_log.info("%s %s", kind, message, extra={"kind": kind, **fields})


def fields_text(**fields) -> str:
    return " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)


def request_user_id() -> int | None:
    """The user a request acted for, as far as the request itself already knew it."""
    from app.sockets.common import LOGIN_SESSION_USER_ID

    api_user = g.get("api_user")
    if api_user is not None:
        return api_user.id
    # Only a session the view already read: reading it here would add Vary: Cookie to every response.
    if session.accessed:
        user_id = session.get(LOGIN_SESSION_USER_ID)
        if isinstance(user_id, str) and user_id.isdigit():
            return int(user_id)
    return None


def init_request_log(app: Flask) -> None:
    @app.before_request
    def start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        fields = {
            "method": request.method,
            "path": request.path,  # without the query string
            "status": response.status_code,
            "duration_ms": duration_ms,
            "remote_addr": request.remote_addr,
            "user_id": request_user_id(),
        }
        log_access("request", fields_text(**fields), **fields)
        return response
