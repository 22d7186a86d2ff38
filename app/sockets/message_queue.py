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

import logging

import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("switchboard.message_queue")

RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0


class CatchUpRedisManager(socketio.RedisManager):
    """python-socketio's Redis manager, whose listener makes this worker's clients catch up after an outage."""

    def __init__(self, url: str, channel: str) -> None:
        # No silent reconnects inside redis-py: every lost subscription must reach the loop below.
        super().__init__(url, channel=channel, redis_options={"retry": Retry(NoBackoff(), 0)})
        self.interruptions = 0

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
        eio = self.server.eio
        sessions = [session for session in list(eio.sockets.values()) if not session.closed]
        log.warning("message queue subscribed again after an outage: %d clients reconnect to catch up", len(sessions))
        for session in sessions:
            try:
                # abort: no close packet, so clients see a dropped transport and reconnect on their own.
                session.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
            except Exception:
                log.exception("could not close connection %s", session.sid)


def check_internals() -> None:
    """Fail at start-up if python-socketio no longer reads its Redis subscription the way this manager assumes."""
    problems = []
    listen = getattr(socketio.RedisManager, "_listen", None)
    listen_code = getattr(listen, "__code__", None)
    if listen_code is None or "_redis_listen_with_retries" not in listen_code.co_names:
        problems.append("RedisManager._listen no longer reads _redis_listen_with_retries")
    for name in ("_redis_connect", "pubsub", "channel", "server"):
        if not hasattr(socketio.RedisManager("redis://", channel="probe"), name):
            problems.append(f"missing RedisManager.{name}")
    if problems:
        raise RuntimeError(
            "python-socketio changed under the message queue (app/sockets/message_queue.py): "
            + "; ".join(problems)
            + ". Pin the version in requirements.txt or update CatchUpRedisManager."
        )
