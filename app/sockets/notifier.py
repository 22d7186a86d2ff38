"""The notifier on Socket.IO: emits, room moves and disconnects that reach every worker through the message queue."""

from __future__ import annotations

import logging

from flask_socketio import SocketIO

from app.services.notifier import Notifier, room_key, user_key
from app.services.presence import PresenceStore

log = logging.getLogger("switchboard.sockets")

CHAT = "/"
ADMIN = "/admin"


class SocketNotifier(Notifier):
    """Every method runs after a commit: a failed emit is logged, never turned into a failed action."""

    def __init__(self, socketio: SocketIO, presence: PresenceStore) -> None:
        self.socketio = socketio
        self.presence = presence

    def _emit(self, event: str, data: dict, *, to, skip_sid=None, namespace: str = CHAT) -> None:
        try:
            self.socketio.emit(event, data, to=to, namespace=namespace, skip_sid=skip_sid)
        except Exception:
            log.exception("could not emit %s to %s", event, to)

    def to_room(self, room, event, data, *, skip_sid=None):
        self._emit(event, data, to=room_key(room), skip_sid=skip_sid)

    def to_users(self, user_ids, event, data, *, skip_sid=None):
        keys = sorted({user_key(user_id) for user_id in user_ids})
        if keys:
            self._emit(event, data, to=keys, skip_sid=skip_sid)

    def to_sid(self, sid, event, data):
        self._emit(event, data, to=sid)

    def to_everyone(self, event, data):
        self._emit(event, data, to=None)

    def _move(self, user_id: int, room: str, enter: bool) -> None:
        key = room_key(room)
        server = self.socketio.server
        for sid in self.presence.sids_of(user_id):
            try:
                if enter:
                    server.enter_room(sid, key, namespace=CHAT)
                else:
                    server.leave_room(sid, key, namespace=CHAT)
            except Exception:
                log.exception("could not move %s %s %s", sid, "into" if enter else "out of", key)
                continue
            info = self.presence.get(sid)
            if info is not None:
                names = set(info.rooms)
                if enter:
                    names.add(room)
                else:
                    names.discard(room)
                self.presence.update(sid, rooms=sorted(names))

    def join_user(self, user_id, room):
        self._move(user_id, room, enter=True)

    def leave_user(self, user_id, room):
        self._move(user_id, room, enter=False)

    def disconnect_sid(self, sid, reason, namespace: str = CHAT):
        """`kicked` first, then the disconnect, on the same path, so the client sees why."""
        try:
            self.socketio.emit("kicked", {"reason": reason}, to=sid, namespace=namespace)
            self.socketio.server.disconnect(sid, namespace=namespace)
        except Exception:
            log.exception("could not disconnect %s from %s", sid, namespace)

    def disconnect_user(self, user_id, reason):
        for sid in self.presence.sids_of(user_id):
            self.disconnect_sid(sid, reason)
        for sid in self.presence.admin_sids_of(user_id):
            self.disconnect_sid(sid, reason, namespace=ADMIN)
