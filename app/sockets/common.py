"""What every namespace shares: acks, the handler guard, and authentication on connect."""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

from flask import current_app, session
from flask_login import UserMixin, current_user, login_user
from flask_socketio import ConnectionRefusedError, Namespace

from app.errors import ServiceError
from app.extensions import db
from app.models import User, isoformat
from app.services import users
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
        try:
            result = method(self, args[0] if args else None)
            return ack(**result) if result is not None else ack()
        except ServiceError as error:
            db.session.rollback()
            return ack_error(error.code, error.message)
        except Exception:
            log.exception(
                "error in %s handler %s",
                getattr(self, "namespace", "?"),
                method.__name__,
            )
            db.session.rollback()
            return ack_error("internal", "internal server error")

    return observed(wrapper, method.__name__.removeprefix("on_"))


class GuardedNamespace(Namespace):
    """A namespace that answers unknown events with an error ack instead of silence."""

    def trigger_event(self, event, *args):
        if event in ("connect", "disconnect"):
            # A client may also send an ordinary event by one of these names; the server's own
            # connect and disconnect calls arrive only while the socket is half connected.
            sid = args[0] if args else None
            if self.socketio.server.manager.is_connected(sid, self.namespace):
                return ack_error("invalid", f"{event!r} is reserved and cannot be sent")
            return observe_connection(self, event, sid, super().trigger_event, *args)
        elif not hasattr(self, f"on_{event}"):
            return ack_error("invalid", f"unknown event {event!r}")
        return super().trigger_event(event, *args)


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
            return users.user_from_token(
                token,
                current_app.config["SECRET_KEY"],
                current_app.config["TOKEN_TTL_SECONDS"],
            )
        if current_user.is_authenticated:
            return current_user._get_current_object()
        user_id = session.get(LOGIN_SESSION_USER_ID)
        if isinstance(user_id, str) and user_id.isdigit():
            user = db.session.get(User, int(user_id))
            if user is not None and user.banned:
                raise ServiceError("banned", users.ban_message(user))
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
