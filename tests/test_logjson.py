"""JSON log lines of what would otherwise reach stderr as bare text: failed greenlets, uncaught exceptions."""

import io
import json
import logging
import sys

import pytest

import logjson


@pytest.fixture
def json_output():
    """Root's JSON lines, as a list of dicts read after the test's logging."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logjson.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def raised(error: Exception):
    try:
        raise error
    except Exception:
        return sys.exc_info()


def test_a_failed_greenlet_is_one_json_record_without_its_context(json_output):
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_COOKIE": "session=secret-cookie"}
    logjson.print_greenlet_exception(environ, *raised(KeyError("Session is disconnected")))
    [line] = json_output()
    assert line["logger"] == "gevent.hub" and line["level"] == "ERROR"
    assert line["message"] == "dict failed with KeyError"
    assert "Session is disconnected" in line["exception"]
    assert "secret-cookie" not in json.dumps(line)


def test_an_uncaught_exception_is_one_json_record(json_output):
    logjson.log_uncaught(*raised(RuntimeError("boom")))
    [line] = json_output()
    assert line["logger"] == "uncaught" and line["level"] == "CRITICAL"
    assert line["message"] == "uncaught RuntimeError" and "boom" in line["exception"]


def test_gunicorn_logconfig_sends_gunicorn_records_through_one_json_handler():
    config = logjson.gunicorn_logconfig("info")
    assert config["root"]["handlers"] == ["json"]
    assert all(logger["handlers"] == [] and logger["propagate"] for logger in config["loggers"].values())
    formatter = config["formatters"]["json"]["()"]()
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "Booting worker with pid: %s", (7,), None)
    assert json.loads(formatter.format(record))["message"] == "Booting worker with pid: 7"
