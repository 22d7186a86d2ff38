"""The start-up check of the python-socketio internals the catch-up message queue relies on."""

import pytest
import socketio

from app.sockets.message_queue import CatchUpRedisManager, check_internals


def test_the_installed_python_socketio_has_what_the_message_queue_needs():
    check_internals()
    assert issubclass(CatchUpRedisManager, socketio.RedisManager)


def test_a_listener_that_no_longer_reads_through_the_retry_loop_stops_the_start(monkeypatch):
    monkeypatch.setattr(socketio.RedisManager, "_listen", lambda self: iter(()))
    with pytest.raises(RuntimeError, match="python-socketio changed under the message queue"):
        check_internals()


def test_a_manager_without_its_connect_step_stops_the_start(monkeypatch):
    monkeypatch.delattr(socketio.RedisManager, "_redis_connect")
    with pytest.raises(RuntimeError, match="missing RedisManager._redis_connect"):
        check_internals()
