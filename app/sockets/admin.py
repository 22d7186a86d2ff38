"""The `/admin` namespace: live statistics and moderation, for admins only."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from flask import current_app, request
from flask_socketio import ConnectionRefusedError, join_room, leave_room

from app.errors import ServiceError
from app.extensions import db
from app.models import User
from app.services import messages, moderation, rooms, validation
from app.services.presence import PresenceStore, SocketInfo
from app.sockets.common import GuardedNamespace, connecting_user, event_handler, log

CHAT_NAMESPACE = "/"
# Socket.IO room of this worker's admin sockets: the target of the periodic stats push.
ADMINS_ROOM = "admins"


class AdminNamespace(GuardedNamespace):
    def __init__(self, namespace: str, *, presence: PresenceStore):
        super().__init__(namespace)
        self.presence = presence
        self.admins: dict[str, int] = {}  # admin socket sid -> user id
        # One stats pusher per worker, whatever the number of admins; it runs while any admin
        # socket of this worker is connected, and the lock makes "last admin gone" and
        # "first admin back" agree on whether it is running.
        self._admins_lock = threading.Lock()
        self.stats_task = None

    # -- connection ---------------------------------------------------------

    def on_connect(self, auth=None):
        user = connecting_user(auth)
        if not user.is_admin:
            raise ConnectionRefusedError("forbidden")
        join_room(ADMINS_ROOM)
        self.presence.add_admin(request.sid, user.id)
        with self._admins_lock:
            self.admins[request.sid] = user.id
            self._start_stats_task()

    def on_disconnect(self, reason=None):
        self.presence.remove_admin(request.sid)
        with self._admins_lock:
            self.admins.pop(request.sid, None)

    # -- authorization --------------------------------------------------------

    def _admin(self) -> User:
        """Authorization on every event: a demoted or banned admin can do nothing more."""
        user_id = self.admins.get(request.sid)  # type: ignore[attr-defined]  # set by Flask-SocketIO
        user = db.session.get(User, user_id) if user_id is not None else None
        if user is None:
            raise ServiceError("unauthorized", "this socket is not signed in")
        if not user.is_admin or user.banned:
            leave_room(ADMINS_ROOM)
            raise ServiceError("forbidden", "admins only")
        return user

    # -- periodic stats -------------------------------------------------------

    def _start_stats_task(self) -> None:
        """Called with the admins lock held."""
        interval = current_app.config["STATS_INTERVAL_SECONDS"]
        if interval <= 0 or self.stats_task is not None:
            return
        app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxy's target
        self.stats_task = self.socketio.start_background_task(self._push_stats, app, interval)

    def _push_stats(self, app, interval: float) -> None:
        while True:
            self.socketio.sleep(interval)
            with self._admins_lock:
                if not self.admins:
                    self.stats_task = None
                    return
                admins = dict(self.admins)
            try:
                with app.app_context():
                    self._drop_revoked_admins(admins)
                    stats = self._stats()
                # Each worker pushes to its own admin sockets only; through the message
                # queue every admin would get one push per worker.
                self.socketio.server.emit("stats", stats, to=ADMINS_ROOM, namespace=self.namespace, ignore_queue=True)
            except Exception:
                log.exception("could not push stats to admins")

    def _drop_revoked_admins(self, admins: dict[str, int]) -> None:
        """Sockets of users demoted or banned since they connected get no more pushes."""
        still_admins = set(
            db.session.scalars(
                sa.select(User.id).where(
                    User.id.in_(set(admins.values())), User.is_admin.is_(True), User.banned.is_(False)
                )
            )
        )
        for sid, user_id in admins.items():
            if user_id not in still_admins:
                self.socketio.server.leave_room(sid, ADMINS_ROOM, namespace=self.namespace)

    # -- helpers ------------------------------------------------------------

    def _stats(self) -> dict:
        online = self.presence.online_user_ids()
        return {
            "users_online": len(online),
            "sockets": len(self.presence.all()),
            "rooms": rooms.room_dicts(rooms.all_rooms(), online),
            "messages_last_minute": messages.count_since(60),
        }

    def _transport(self, info: SocketInfo) -> str:
        """The live transport of a socket of this worker (it changes on upgrade), else the registry's."""
        server = self.socketio.server
        if server.manager.is_connected(info.sid, CHAT_NAMESPACE):
            try:
                return server.transport(info.sid, namespace=CHAT_NAMESPACE)
            except KeyError:
                pass
        return info.transport

    # -- events: read-only ----------------------------------------------------

    @event_handler
    def on_stats(self, data):
        validation.payload(data)
        self._admin()
        return {"stats": self._stats()}

    @event_handler
    def on_sockets(self, data):
        validation.payload(data)
        self._admin()
        listed = sorted(self.presence.all(), key=lambda info: (info.connected_at, info.sid))
        return {
            "sockets": [
                {
                    "sid": info.sid,
                    "user": info.user,
                    "rooms": sorted(info.rooms),
                    "transport": self._transport(info),
                    "connected_at": info.connected_at,
                }
                for info in listed
            ]
        }

    @event_handler
    def on_users(self, data):
        data = validation.payload(data)
        self._admin()
        found = moderation.search_users(data.get("query"))
        online = self.presence.online_user_ids()
        return {"users": [{**user, "online": user["id"] in online} for user in found]}

    @event_handler
    def on_audit(self, data):
        data = validation.payload(data)
        self._admin()
        return {"entries": moderation.audit_log(data.get("limit"))}

    # -- events: moderation ---------------------------------------------------

    @event_handler
    def on_kick(self, data):
        data = validation.payload(data)
        admin = self._admin()
        sid = moderation.socket_id(data.get("sid"))
        info = self.presence.get(sid)
        if info is None:
            raise ServiceError("not_found", "no connected socket with that sid")
        moderation.kick(admin.id, sid, info.user["username"])
        return {"sid": sid, "user": info.user}

    @event_handler
    def on_ban(self, data):
        data = validation.payload(data)
        admin = self._admin()
        return {"user": moderation.ban_user(admin.id, data.get("user"), data.get("reason"))}

    @event_handler
    def on_unban(self, data):
        data = validation.payload(data)
        admin = self._admin()
        return {"user": moderation.unban_user(admin.id, data.get("user"))}

    @event_handler
    def on_mute(self, data):
        data = validation.payload(data)
        admin = self._admin()
        return {"user": moderation.mute_user(admin.id, data.get("user"), data.get("seconds"))}

    @event_handler
    def on_unmute(self, data):
        data = validation.payload(data)
        admin = self._admin()
        return {"user": moderation.unmute_user(admin.id, data.get("user"))}

    @event_handler
    def on_delete_message(self, data):
        data = validation.payload(data)
        admin = self._admin()
        return {"message": moderation.delete_message(admin.id, data.get("id"))}

    @event_handler
    def on_announce(self, data):
        data = validation.payload(data)
        admin = self._admin()
        announcement = moderation.announce(admin.id, data.get("body"))
        return {"announcement": announcement}
