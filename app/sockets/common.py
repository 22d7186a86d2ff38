"""What every namespace shares: acks, the handler guard, and authentication on connect."""

from __future__ import annotations

import functools
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, request, session
from flask_login import UserMixin, current_user, login_user
from flask_socketio import ConnectionRefusedError, Namespace

from app.database import STORAGE_PROBLEMS, storage_problem
from app.errors import ServiceError
from app.extensions import db
from app.models import User, isoformat
from app.services import users
from app.services.ratelimit import TokenBuckets
from app.socket_guard import close_connection, log_budget
from app.sockets.dispatch import event_context, run_in_context
from app.sockets.observe import observe_connection, observed, remember_socket_user

log = logging.getLogger("switchboard.sockets")

# Where Flask-Login keeps the signed-in user's id in the session. Its user loader refuses a banned
# user, so connecting_user reads the id itself to answer "banned" rather than "unauthorized".
LOGIN_SESSION_USER_ID = "_user_id"


def ack(**data) -> dict:
    return {"ok": True, **data}


def ack_error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def event_handler(method):
    """Run an ``on_<event>`` method: one payload in, one ack out, whatever happens.

    Refusals become error acks; anything unexpected is logged and answered
    ``internal``. Extra or missing arguments never reach the method as a TypeError.
    """

    @functools.wraps(method)
    def wrapper(self, *args):
        # Flask-SocketIO's own path (app/sockets/dispatch.py takes it only now and then) runs an
        # event in a request context for the handshake's URL, which no Flask route matches: the NotFound kept in routing_exception holds, through its
        # traceback, the frames of this very call and with them the payload, in a reference
        # cycle that only the cyclic GC frees (a burst of 1 MB attachments held 190 MB so).
        request.routing_exception = None
        try:
            result = method(self, args[0] if args else None)
            return ack(**result) if result is not None else ack()
        except ServiceError as error:
            db.session.rollback()
            return ack_error(error.code, error.message)
        except Exception as error:
            db.session.rollback()
            problem = storage_problem(error)
            if problem is not None:
                # One line, not a traceback per refused write while the disk stays full.
                log.error(
                    "%s handler %s: %s", getattr(self, "namespace", "?"), method.__name__, STORAGE_PROBLEMS[problem]
                )
                return ack_error("internal", STORAGE_PROBLEMS[problem])
            log.exception(
                "error in %s handler %s",
                getattr(self, "namespace", "?"),
                method.__name__,
            )
            return ack_error("internal", "internal server error")

    return observed(wrapper, method.__name__.removeprefix("on_"))


# The user a connect handler signed in, for the dispatch layer that called it (see connecting_user).
_connecting_user_id: ContextVar[int | None] = ContextVar("connecting_user_id", default=None)


@dataclass(frozen=True)
class FloodLimits:
    """Event budgets: token buckets per socket and per user, and how many refusals end a connection."""

    socket_burst: float = 300
    socket_refill_per_second: float = 30
    user_burst: float = 600
    user_refill_per_second: float = 60
    refusals_before_disconnect: float = 50
    refusals_forgiven_per_second: float = 1
    max_events_in_progress: int = 256


class FloodGuard:
    """Shared by every namespace of a worker: spends an event's cost from its socket's and its user's budget."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self.sockets = TokenBuckets(limits.socket_burst, limits.socket_refill_per_second)
        self.users = TokenBuckets(limits.user_burst, limits.user_refill_per_second)
        self.refusals = TokenBuckets(limits.refusals_before_disconnect, limits.refusals_forgiven_per_second)

    def admit(self, socket_key: str, user_id: int | None, cost: float) -> bool:
        if not self.sockets.take(socket_key, cost):
            return False
        return user_id is None or self.users.take(f"user:{user_id}", cost)

    def refused(self, socket_key: str) -> bool:
        """Count a refusal; True once the socket has kept flooding past enough of them."""
        return not self.refusals.take(socket_key)

    def forget(self, socket_key: str) -> None:
        self.sockets.forget(socket_key)
        self.refusals.forget(socket_key)


# What an event costs from a flood budget: reading presence or a marker is cheap, a query
# over history or membership dear; any other event (sending, moderating) costs 2.
EVENT_COSTS: dict[str, float] = {
    **dict.fromkeys(["typing", "read", "who", "stats"], 1),
    **dict.fromkeys(
        [
            "join",
            "leave",
            "history",
            "dm_history",
            "sync",
            "search",
            "rooms",
            "create_room",
            "sockets",
            "users",
            "audit",
        ],
        5,
    ),
}


class GuardedNamespace(Namespace):
    """A namespace that answers unknown events with an error ack instead of silence, within flood budgets.

    Every event a client sends costs tokens (``event_costs``, else ``default_cost``) from
    its socket's and its user's buckets; one that finds too few is answered
    ``rate_limited`` at once, before any handler runs, and a socket that keeps sending
    past ``refusals_before_disconnect`` refusals has its whole connection closed.
    """

    event_costs: dict[str, float] = EVENT_COSTS
    default_cost: float = 2
    flood_guard: FloodGuard | None = None

    def __init__(self, namespace: str | None = None) -> None:
        super().__init__(namespace)
        self.socket_users: dict[str, int] = {}
        self._in_progress: dict[str, int] = {}
        self._closing: set[str] = set()

    def trigger_event(self, event, *args):
        sid = args[0] if args else None
        if event in ("connect", "disconnect"):
            # A client may also send an ordinary event by one of these names; the server's own
            # connect and disconnect calls arrive only while the socket is half connected.
            if self.socketio.server.manager.is_connected(sid, self.namespace):
                refusal = self._spend(sid, event)
                return refusal or ack_error("invalid", f"{event!r} is reserved and cannot be sent")
            if event == "connect":
                return observe_connection(self, event, sid, lambda _event, *rest: self._connect(*rest), *args)
            try:
                return observe_connection(self, event, sid, super().trigger_event, *args)
            finally:
                self._forget(sid)
        refusal = self._spend(sid, event)
        if refusal is not None:
            return refusal
        if not hasattr(self, f"on_{event}"):
            return ack_error("invalid", f"unknown event {event!r}")
        self._in_progress[sid] = self._in_progress.get(sid, 0) + 1
        try:
            context = event_context(self.socketio, self.namespace, sid)
            if context is None:
                return super().trigger_event(event, *args)
            return run_in_context(context, getattr(self, f"on_{event}"), event, self.namespace, sid, args[1:])
        finally:
            left = self._in_progress.get(sid, 1) - 1
            if left > 0:
                self._in_progress[sid] = left
            else:
                self._in_progress.pop(sid, None)

    def _connect(self, sid, *args):
        token = _connecting_user_id.set(None)
        try:
            result = super().trigger_event("connect", sid, *args)
            user_id = _connecting_user_id.get()
        finally:
            _connecting_user_id.reset(token)
        if result is not False and user_id is not None:
            self.socket_users[sid] = user_id
        return result

    def _forget(self, sid) -> None:
        self.socket_users.pop(sid, None)
        self._in_progress.pop(sid, None)
        self._closing.discard(sid)
        if self.flood_guard is not None:
            self.flood_guard.forget(f"{self.namespace}:{sid}")

    def _spend(self, sid, event) -> dict | None:
        """None when the event may run; else the ``rate_limited`` ack that answers it."""
        guard = self.flood_guard
        if guard is None or not isinstance(sid, str):
            return None
        if sid in self._closing:
            return ack_error("rate_limited", "this connection is being closed for flooding")
        key = f"{self.namespace}:{sid}"
        cost = self.event_costs.get(event, self.default_cost) if isinstance(event, str) else self.default_cost
        busy = self._in_progress.get(sid, 0) >= guard.limits.max_events_in_progress
        if not busy and guard.admit(key, self.socket_users.get(sid), cost):
            return None
        if guard.refused(key):
            self._close_for_flooding(sid)
        return ack_error("rate_limited", "too many events: slow down")

    def _close_for_flooding(self, sid: str) -> None:
        self._closing.add(sid)
        server = self.socketio.server
        eio_sid = server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid is None:
            return
        if log_budget.allow():
            log.warning("closing Engine.IO connection %s: %s kept flooding past its refusals", eio_sid, sid)
        # After this event's answer: closing here would run the disconnect handlers inside it.
        self.socketio.start_background_task(close_connection, server.eio, eio_sid, "flooding")


def now_iso() -> str:
    return isoformat(datetime.now(UTC))


@remember_socket_user
def connecting_user(auth) -> User:
    """The user opening a socket, from ``auth.token`` or the session cookie.

    Refusals raise ConnectionRefusedError, whose message the client sees in connect_error.
    """
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        if token is not None:
            user = users.user_from_token(
                token,
                current_app.config["SECRET_KEY"],
                current_app.config["TOKEN_TTL_SECONDS"],
            )
            _connecting_user_id.set(user.id)
            return user
        if current_user.is_authenticated:
            _connecting_user_id.set(current_user.id)
            return current_user._get_current_object()
        user_id = session.get(LOGIN_SESSION_USER_ID)
        if isinstance(user_id, str) and user_id.isdigit():
            stored = db.session.get(User, int(user_id))
            if stored is not None and stored.banned:
                raise ServiceError("banned", users.ban_message(stored))
    except ServiceError as error:
        raise ConnectionRefusedError(error.code) from None
    raise ConnectionRefusedError("unauthorized")


def check_login_session_key(app) -> None:
    """Fail at start-up if Flask-Login no longer keeps the user id under ``LOGIN_SESSION_USER_ID``."""

    class Probe(UserMixin):
        id = "probe"

    with app.test_request_context():
        login_user(Probe())
        if session.get(LOGIN_SESSION_USER_ID) != "probe":
            raise RuntimeError(
                f"Flask-Login no longer stores the signed-in user's id under {LOGIN_SESSION_USER_ID!r} "
                "(app/sockets/common.py reads it to refuse banned users): pin Flask-Login or update the key."
            )


def transport_of(socketio, sid: str, namespace: str) -> str:
    try:
        return socketio.server.transport(sid, namespace=namespace)
    except (KeyError, TypeError):
        return "unknown"
