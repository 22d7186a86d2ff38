"""Closing every connection of this worker at once, so that each client reconnects and catches up."""

from __future__ import annotations

import logging

log = logging.getLogger("switchboard.sockets")


def close_all(engineio_server) -> int:
    """Close every open Engine.IO connection of this worker; returns how many were open.

    No close packet is sent: clients see a dropped transport and reconnect on their own,
    then catch up with ``sync`` and resend what was not acknowledged (the same client_id).
    """
    sessions = [session for session in list(engineio_server.sockets.values()) if not session.closed]
    for session in sessions:
        try:
            session.close(wait=False, abort=True, reason=engineio_server.reason.TRANSPORT_CLOSE)
        except Exception:
            log.exception("could not close connection %s", session.sid)
    return len(sessions)


def close_all_when_stopping(worker, app, interval: float = 0.1, settle: float = 1.5) -> None:
    """Run in a gunicorn gevent worker: once it is told to stop, close its connections at once.

    Otherwise websockets and long polls hold the worker until ``graceful_timeout`` and are then
    cut anyway; closed at once, clients reconnect to a running worker straight away. gunicorn
    stops accepting up to a second after the signal, so a client that reconnected here meanwhile
    is closed once more after ``settle`` seconds.
    """
    import gevent

    while worker.alive:
        gevent.sleep(interval)
    engineio_server = app.extensions["socketio"].server.eio
    closed = close_all(engineio_server)
    log.info("stopping: closed %d connections so their clients reconnect elsewhere", closed)
    gevent.sleep(settle)
    close_all(engineio_server)
