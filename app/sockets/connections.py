"""Closing every connection of this worker at once, so that each client reconnects and catches up."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("switchboard.sockets")


def close_all(engineio_server) -> int:
    """Close every open Engine.IO connection of this worker; returns how many were open.

    No close packet is sent: clients see a dropped transport and reconnect on their own,
    then catch up with ``sync`` and resend what was not acknowledged (the same client_id).
    A closed session is forgotten at once, as Engine.IO's own ``disconnect`` does, so that a
    request still coming for it is refused as an unknown session.
    """
    sessions = [session for session in list(engineio_server.sockets.values()) if not session.closed]
    for session in sessions:
        try:
            session.close(wait=False, abort=True, reason=engineio_server.reason.TRANSPORT_CLOSE)
        except Exception:
            log.exception("could not close connection %s", session.sid)
        if engineio_server.sockets.get(session.sid) is session:
            del engineio_server.sockets[session.sid]
    return len(sessions)


def end_connections(handlers, *, websockets: bool) -> int:
    """End the HTTP connections of ``handlers`` (gevent's per-connection handlers) that hold the worker.

    Every connection closes after the request it serves. One kept alive and idle is shut at
    once, and so is a websocket when ``websockets`` is true: one still in the middle of an
    upgrade waits for the client's next frame, which may never come. Returns how many were shut.
    """
    shut = 0
    for handler in list(handlers):
        handler.close_connection = True
        if not (handler.waiting_for_request or (websockets and getattr(handler, "websocket", None) is not None)):
            continue
        connection = getattr(handler, "socket", None)
        if connection is None:
            continue
        try:
            # Wakes whatever waits to read from it; the handler then ends the connection itself.
            connection.shutdown(socket.SHUT_RDWR)
            shut += 1
        except OSError:
            pass
    return shut


def close_all_when_stopping(worker, app, handler_class, interval: float = 0.1, flush: float = 0.5) -> None:
    """Run in a gunicorn gevent worker: once it is told to stop, end its connections at once.

    Otherwise websockets, long polls and idle kept-alive connections hold the worker until
    ``graceful_timeout`` and are then cut anyway; closed at once, clients reconnect to a running
    worker straight away. First every Engine.IO session is closed (their writers send what they
    had queued, long polls return) and idle connections are shut; after ``flush`` seconds every
    websocket left is shut too, upgrades under way included. gunicorn stops accepting up to a
    second after the signal, so this repeats until the worker exits: a client that reconnected
    here meanwhile is closed again. Requests in flight finish, then their connections close.
    """
    import gevent

    while worker.alive:
        gevent.sleep(interval)
    handler_class.stopping = True
    engineio_server = app.extensions["socketio"].server.eio
    closed = close_all(engineio_server)
    end_connections(handler_class.open_connections, websockets=False)
    log.info("stopping: closed %d connections so their clients reconnect elsewhere", closed)
    gevent.sleep(flush)
    while True:
        close_all(engineio_server)
        end_connections(handler_class.open_connections, websockets=True)
        gevent.sleep(interval)
