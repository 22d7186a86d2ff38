"""Metrics and access-log records of sockets: connections, events and their acks."""

from __future__ import annotations

import functools
import logging
import threading
import time

from flask import request
from flask_socketio import ConnectionRefusedError

from app import metrics
from app.logs import fields_text, log_access

log = logging.getLogger("switchboard.sockets")

# (namespace, sid) -> user id of every socket of this worker that got past authentication.
_socket_users: dict[tuple[str, str], int] = {}
_socket_users_lock = threading.Lock()


def socket_user_id(namespace: str, sid: str | None) -> int | None:
    return _socket_users.get((namespace, sid)) if sid else None


def remember_socket_user(authenticate):
    """Decorate the connect-time authentication: the user it returns is the socket's from then on."""

    @functools.wraps(authenticate)
    def remembering(*args, **kwargs):
        user = authenticate(*args, **kwargs)
        with _socket_users_lock:
            _socket_users[(request.namespace, request.sid)] = user.id
        return user

    return remembering


def _forget(namespace: str, sid: str | None) -> int | None:
    if not sid:
        return None
    with _socket_users_lock:
        return _socket_users.pop((namespace, sid), None)


def observed(handler, event: str):
    """Wrap an event handler that returns an ack: count the event and its ack, time it, log refusals."""

    @functools.wraps(handler)
    def observing(self, *args):
        namespace = self.namespace
        metrics.series(metrics.SOCKET_EVENTS, namespace, event).inc()
        started = time.perf_counter()
        answer = handler(self, *args)
        metrics.record_ack(namespace, event, answer, time.perf_counter() - started)
        if not answer.get("ok"):
            sid = request.sid
            fields = {
                "outcome": "refused",
                "namespace": namespace,
                "event": event,
                "code": answer.get("error", {}).get("code"),
                "sid": sid,
                "user_id": socket_user_id(namespace, sid),
            }
            log_access("event", fields_text(**fields), **fields)
        return answer

    return observing


def observe_connection(namespace_handler, event: str, sid: str | None, trigger, *args):
    """Run the connect or disconnect handler through ``trigger``, counting and logging the outcome."""
    namespace = namespace_handler.namespace
    socketio = namespace_handler.socketio
    if event == "disconnect":
        try:
            return trigger(event, *args)
        finally:
            fields = {
                "namespace": namespace,
                "sid": sid,
                "user_id": _forget(namespace, sid),
                "reason": str(args[1]) if len(args) > 1 and args[1] is not None else None,
            }
            log_access("disconnect", fields_text(**fields), **fields)
    metrics.start_socket_refresher(socketio)
    environ = socketio.server.get_environ(sid, namespace=namespace) or {}
    fields = {"namespace": namespace, "sid": sid, "remote_addr": environ.get("REMOTE_ADDR")}
    try:
        result = trigger(event, *args)
    except ConnectionRefusedError as refusal:
        _refused(fields, refusal.error_args.get("message") if isinstance(refusal.error_args, dict) else None)
        raise
    except Exception:
        # Unanswered, the client would wait for its connect timeout: refuse it with a code instead.
        log.exception("could not open a %s socket", namespace)
        _refused(fields, "internal")
        raise ConnectionRefusedError("internal") from None
    if result is False:
        _refused(fields, None)
        return result
    metrics.SOCKET_CONNECTS.labels(namespace, "accepted").inc()
    fields.update(
        outcome="accepted",
        user_id=socket_user_id(namespace, sid),
        transport=_transport(socketio, sid, namespace),
    )
    log_access("connect", fields_text(**fields), **fields)
    return result


def _refused(fields: dict, reason: str | None) -> None:
    metrics.SOCKET_CONNECTS.labels(fields["namespace"], "refused").inc()
    fields.update(outcome="refused", user_id=_forget(fields["namespace"], fields["sid"]), reason=reason)
    log_access("connect", fields_text(**fields), **fields)


def _transport(socketio, sid, namespace) -> str:
    try:
        return socketio.server.transport(sid, namespace=namespace)
    except (KeyError, TypeError, ValueError):
        return "unknown"
