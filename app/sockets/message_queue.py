"""The Socket.IO message queue on Redis, made to lose no event across a Redis outage.

Redis pub/sub delivers a message only to the workers subscribed at that moment. While
a worker's subscription is down (Redis restarting, a network cut, the listener waiting
to retry) the events other workers publish never reach its clients, and nothing tells
them. So once the listener is subscribed again, this worker closes its clients'
connections: every client reconnects and catches up with ``sync``, as after any
dropped connection, and live events reach it again from then on.

python-socketio's listener retries with a back-off that grows to a minute; this one
retries every ``RETRY_MAX_SECONDS`` at most, so events flow again within seconds of
Redis coming back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.sockets.connections import close_all
from app.sockets.room_index import RoomIndex

log = logging.getLogger("switchboard.message_queue")

RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0

# Invalidations of the per-worker caches (app/services/hot_cache.py) travel on the same channel as
# python-socketio's messages, so they keep their order with the emits and disconnects published
# after them. Each is a JSON string, ``"<tag> <host id> <JSON object>"``, that python-socketio
# itself would skip (it is not an object with a "method").
INVALIDATION_TAG = "switchboard-invalidate"
_INVALIDATION_START = json.dumps(INVALIDATION_TAG + " ")[:-1].encode()


class CatchUpRedisManager(RoomIndex, socketio.RedisManager):
    """python-socketio's Redis manager, whose listener makes this worker's clients catch up after an outage."""

    def __init__(self, url: str, channel: str) -> None:
        # No silent reconnects inside redis-py: every lost subscription must reach the loop below.
        super().__init__(url, channel=channel, redis_options={"retry": Retry(NoBackoff(), 0)})
        self.interruptions = 0
        # Set by the app: applies another worker's invalidation; drops every entry after an outage.
        self.on_invalidation: Callable[[dict], None] | None = None
        self.on_resubscribed: Callable[[], None] | None = None

    def publish_invalidation(self, message: dict) -> None:
        """Tell every other worker to drop these cache entries (this one already has)."""
        self._publish(f"{INVALIDATION_TAG} {self.host_id} {json.dumps(message)}")

    def _listen(self):
        for data in super()._listen():
            if isinstance(data, bytes) and data.startswith(_INVALIDATION_START):
                self._apply_invalidation(data)
                continue
            yield data

    def _apply_invalidation(self, data: bytes) -> None:
        try:
            _tag, host_id, body = json.loads(data).split(" ", 2)
            if host_id != self.host_id and self.on_invalidation is not None:
                self.on_invalidation(json.loads(body))
        except Exception:
            log.exception("could not apply a cache invalidation from the message queue")

    def _redis_listen_with_retries(self):
        delay = RETRY_MIN_SECONDS
        interrupted = False
        while True:
            try:
                self._redis_connect()
                # Held here: a publish that reconnects replaces self.pubsub while this one is read.
                pubsub = self.pubsub
                pubsub.subscribe(self.channel)
                if interrupted:
                    interrupted = False
                    self.interruptions += 1
                    if self.on_resubscribed is not None:
                        # Invalidations published meanwhile never arrived: forget everything cached.
                        self.on_resubscribed()
                    self.server.start_background_task(self.make_clients_catch_up)
                delay = RETRY_MIN_SECONDS
                yield from pubsub.listen()
                interrupted = True  # listen() returns only when the subscription is gone
            except Exception as exc:
                # The same marker python-socketio puts on its records, which app.metrics counts.
                self._get_logger().error(
                    "Cannot receive from redis... retrying in %s secs", delay, extra={"redis_exception": str(exc)}
                )
                interrupted = True
                self.server.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def make_clients_catch_up(self) -> None:
        """Close every connection of this worker, so that each client reconnects and syncs."""
        closed = close_all(self.server.eio)
        log.warning("message queue subscribed again after an outage: %d clients reconnect to catch up", closed)


def check_internals() -> None:
    """Fail at start-up if python-socketio no longer reads its Redis subscription the way this manager assumes."""
    problems = []
    listen = getattr(socketio.RedisManager, "_listen", None)
    listen_code = getattr(listen, "__code__", None)
    if listen_code is None or "_redis_listen_with_retries" not in listen_code.co_names:
        problems.append("RedisManager._listen no longer reads _redis_listen_with_retries")
    thread = getattr(socketio.PubSubManager, "_thread", None)
    thread_code = getattr(thread, "__code__", None)
    if thread_code is None or "_listen" not in thread_code.co_names:
        problems.append("PubSubManager._thread no longer reads _listen")
    for name in ("_redis_connect", "pubsub", "channel", "server", "host_id", "_publish"):
        if not hasattr(socketio.RedisManager("redis://", channel="probe"), name):
            problems.append(f"missing RedisManager.{name}")
    if problems:
        raise RuntimeError(
            "python-socketio changed under the message queue (app/sockets/message_queue.py): "
            + "; ".join(problems)
            + ". Pin the version in requirements.txt or update CatchUpRedisManager."
        )
