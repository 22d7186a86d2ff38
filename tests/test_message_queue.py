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


def test_a_worker_subscribed_again_after_an_outage_forgets_what_it_cached(monkeypatch):
    """Invalidations published while the subscription was down never arrive: every cached fact goes."""
    manager = CatchUpRedisManager("redis://127.0.0.1:1", channel="probe")
    subscriptions = iter([["before the outage"], ["after it"]])

    class PubSub:
        def subscribe(self, channel):
            self.messages = next(subscriptions)

        def listen(self):
            yield from self.messages  # then returns: the subscription is gone

    class Server:
        def start_background_task(self, target):
            pass

    def connect():
        manager.pubsub = PubSub()

    monkeypatch.setattr(manager, "_redis_connect", connect)
    manager.server = Server()
    forgotten: list[str] = []
    manager.on_resubscribed = lambda: forgotten.append("everything")

    received = manager._redis_listen_with_retries()
    assert next(received) == "before the outage"
    assert forgotten == []
    assert next(received) == "after it"
    assert forgotten == ["everything"]
