"""Engine.IO pings from a timer instead of a greenlet parked for the whole ping interval.

python-engineio schedules each socket's next ping by starting a background task that sleeps
``ping_interval`` (25 s) and then queues the PING. Under gevent that is one greenlet per connected
socket, asleep almost all the time, whose saved stack and frames cost several kilobytes per idle
connection. Here a libev timer (a few hundred bytes) waits instead; when it fires, a short-lived
greenlet sends the ping exactly as Engine.IO's own task would (the send may close a socket whose
client stopped answering, which runs disconnect handlers, so it never runs in the hub itself).
"""

from __future__ import annotations

import logging
import time

import gevent
from engineio import packet as eio_packet
from engineio import socket as eio_socket

log = logging.getLogger("switchboard.sockets.pings")

_engineio_schedule_ping = eio_socket.Socket.schedule_ping


def _schedule_ping(self) -> None:
    if not getattr(self.server, "timer_pings", False):
        _engineio_schedule_ping(self)
        return
    # Engine.IO's own rule: a new ping only once the previous ping's cycle completed.
    if self.last_ping:
        self.last_ping = None
        timer = gevent.get_hub().loop.timer(self.server.ping_interval)
        timer.start(_ping_due, self, timer)


def _ping_due(socket, timer) -> None:
    timer.close()
    if not socket.closing and not socket.closed:
        gevent.spawn(_send_ping, socket)


def _send_ping(socket) -> None:
    """What Engine.IO's ``Socket._send_ping`` does after its sleep."""
    if socket.closing or socket.closed:
        return
    socket.last_ping = time.time()
    try:
        socket.send(eio_packet.Packet(eio_packet.PING))
    except Exception:
        log.exception("could not ping %s", socket.sid)


def install_timer_pings(eio_server) -> None:
    """Every socket of this Engine.IO server (gevent only) waits for its pings on a timer."""
    eio_socket.Socket.schedule_ping = _schedule_ping
    eio_server.timer_pings = True


def check_ping_internals() -> None:
    """Fail at start-up if python-engineio no longer schedules pings the way this module replaces."""
    problems = []
    names = set(getattr(getattr(_engineio_schedule_ping, "__code__", None), "co_names", ()))
    if not {"last_ping", "start_background_task", "_send_ping"} <= names:
        problems.append("Socket.schedule_ping no longer starts _send_ping as a background task gated by last_ping")
    send_ping = getattr(eio_socket.Socket, "_send_ping", None)
    send_names = set(getattr(getattr(send_ping, "__code__", None), "co_names", ()))
    if not {"sleep", "ping_interval", "closing", "closed", "last_ping", "send", "PING"} <= send_names:
        problems.append("Socket._send_ping no longer sleeps ping_interval and then sends a PING")
    if problems:
        raise RuntimeError(
            "python-engineio changed under app/sockets/pings.py: "
            + "; ".join(problems)
            + ". Pin the version in requirements.txt or update the timer pings."
        )
