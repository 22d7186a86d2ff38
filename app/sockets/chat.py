"""The `/` namespace: rooms, messages, direct messages, typing and presence."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app, request
from flask_socketio import ConnectionRefusedError, join_room

from app.errors import ServiceError
from app.extensions import db
from app.files import file_store, upload_limits
from app.models import User
from app.services import files, messages, rooms, search, users, validation
from app.services.presence import PresenceStore, SocketInfo
from app.services.ratelimit import RateLimiter
from app.sockets.common import (
    GuardedNamespace,
    connecting_user,
    event_handler,
    log,
    now_iso,
    transport_of,
)


def room_key(name: str) -> str:
    """Socket.IO room of a chat room; prefixed so it can never collide with `user:<id>`."""
    return f"room:{name}"


def user_key(user_id: int) -> str:
    return f"user:{user_id}"


class ChatNamespace(GuardedNamespace):
    def __init__(self, namespace: str, *, presence: PresenceStore, limiter: RateLimiter):
        super().__init__(namespace)
        self.presence = presence
        self.limiter = limiter

    # -- connection ---------------------------------------------------------

    def on_connect(self, auth=None):
        sid = request.sid
        # Everything that can fail runs before the socket is registered, so a failed
        # connect is refused cleanly and never leaves a user "online" without a socket.
        try:
            user = connecting_user(auth)
            member_rooms = rooms.rooms_of(user.id)
            user_dict = user.to_dict()
            session_payload = {
                "user": user_dict,
                "sid": sid,
                "rooms": self._session_rooms(user.id, member_rooms),
                "unread": self._unread(user.id, member_rooms),
            }
        except ConnectionRefusedError:
            raise
        except Exception:
            log.exception("could not open a / socket")
            db.session.rollback()
            raise ConnectionRefusedError("internal") from None
        join_room(user_key(user.id))
        for room in member_rooms:
            join_room(room_key(room.name))
        first = self.presence.add(
            SocketInfo(
                sid=sid,
                user=user_dict,
                transport=transport_of(self.socketio, sid, self.namespace),
                connected_at=now_iso(),
                rooms=[room.name for room in member_rooms],
            )
        )
        if self._banned_meanwhile(user.id):
            # A ban that committed while this socket was being set up disconnected the user's
            # registered sockets, which did not yet include this one.
            self.presence.remove(sid)
            raise ConnectionRefusedError("banned")
        self.emit("session", session_payload, room=sid)
        if first:
            self.emit("presence", {"user": user_dict, "online": True})

    def on_disconnect(self, reason=None):
        info, last = self.presence.remove(request.sid)
        if info is not None and last:
            self.emit("presence", {"user": info.user, "online": False})

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _banned_meanwhile(user_id: int) -> bool:
        db.session.rollback()  # a fresh snapshot: the ban may have committed after ours began
        return bool(db.session.scalar(sa.select(User.banned).where(User.id == user_id)))

    def _socket(self) -> SocketInfo:
        info = self.presence.get(request.sid)
        if info is None:
            raise ServiceError("unauthorized", "this socket is not signed in")
        return info

    def _fresh_user(self) -> User:
        """The user as the database has them now (bans and mutes change while connected)."""
        user = db.session.get(User, self._socket().user_id)
        if user is None:
            raise ServiceError("unauthorized", "this account no longer exists")
        if user.banned:
            raise ServiceError("banned", users.ban_message(user))
        return user

    def _check_send_allowed(self, user: User) -> None:
        """Mutes answer before rate limits; every attempt counts against the limit."""
        within_limit = self.limiter.hit(f"send:{user.id}")
        messages.check_can_post(user)
        if not within_limit:
            raise ServiceError(
                "rate_limited",
                f"slow down: at most {self.limiter.limit} messages in {self.limiter.window:g} seconds",
            )

    def _session_rooms(self, user_id: int, member_rooms) -> list[dict]:
        """ROOM payloads for ``session``, counting the connecting user online in each member room.

        A user with a socket already has it in every member room (join and leave move all of a
        user's sockets), so only a user's first socket adds one to each count.
        """
        names = [room.name for room in member_rooms]
        online = self.presence.online_counts(names)
        if not self.presence.sids_of(user_id):
            online = {name: online.get(name, 0) + 1 for name in names}
        return rooms.room_dicts_with_online(member_rooms, online)

    @staticmethod
    def _unread(user_id: int, member_rooms) -> dict[str, int]:
        """Unread counts of every member room, zero included, so clients can trust the whole map."""
        counts = rooms.unread_counts(user_id)
        return {room.name: counts.get(room.name, 0) for room in member_rooms}

    def _broadcast(self, event: str, data: dict, *, to: str, skip_sid=None) -> None:
        """Emit after a commit: a failed emit is logged, never turned into a failed ack."""
        try:
            self.socketio.emit(event, data, to=to, namespace=self.namespace, skip_sid=skip_sid)
        except Exception:
            log.exception("could not emit %s to %s", event, to)

    def _move_user_sockets(self, user_id: int, name: str, enter: bool) -> None:
        key = room_key(name)
        for sid in self.presence.sids_of(user_id):
            if enter:
                self.socketio.server.enter_room(sid, key, namespace=self.namespace)
            else:
                self.socketio.server.leave_room(sid, key, namespace=self.namespace)
            info = self.presence.get(sid)
            if info is not None:
                names = set(info.rooms)
                names.add(name) if enter else names.discard(name)
                self.presence.update(sid, rooms=sorted(names))

    # -- events -------------------------------------------------------------

    @event_handler
    def on_join(self, data):
        data = validation.payload(data)
        info = self._socket()
        room, _joined = rooms.join_room(info.user_id, data.get("room"))
        self._move_user_sockets(info.user_id, room.name, enter=True)
        recent, _has_more = messages.room_history(room.name)
        [room_dict] = rooms.room_dicts_with_online([room], self.presence.online_counts([room.name]))
        return {"room": room_dict, "messages": recent}

    @event_handler
    def on_leave(self, data):
        data = validation.payload(data)
        info = self._socket()
        room = rooms.leave_room(info.user_id, data.get("room"))
        self._move_user_sockets(info.user_id, room.name, enter=False)
        return None

    @event_handler
    def on_message(self, data):
        # Every attempt that passes authentication counts against the limit, malformed ones included.
        user = self._fresh_user()
        self._check_send_allowed(user)
        data = validation.payload(data)
        posted = messages.post_room_message(user, data.get("room"), data.get("body"), data.get("client_id"))
        if not posted.duplicate:
            self._broadcast(
                "message",
                posted.message,
                to=room_key(posted.message["room"]),
                skip_sid=request.sid,
            )
        return {"message": posted.message}

    @event_handler
    def on_dm(self, data):
        user = self._fresh_user()
        self._check_send_allowed(user)
        data = validation.payload(data)
        # A retry must not depend on its recipient's socket still being there.
        earlier = messages.repeated(user, data.get("client_id"))
        if earlier is not None:
            return {"message": earlier.message}
        to_sid, to_user = data.get("to_sid"), data.get("to_user")
        if (to_sid is None) == (to_user is None):
            raise ServiceError("invalid", "give exactly one of to_sid and to_user")
        if to_sid is not None:
            if not isinstance(to_sid, str):
                raise ServiceError("invalid", "to_sid must be a string")
            target = self.presence.get(to_sid)
            if target is None:
                raise ServiceError("not_found", "no connected socket with that sid")
            recipient = db.session.get(User, target.user_id)
            if recipient is None:
                raise ServiceError("not_found", "no connected socket with that sid")
        else:
            if not isinstance(to_user, str):
                raise ServiceError("invalid", "to_user must be a username")
            recipient = users.get_user(to_user)
        posted = messages.post_direct_message(user, recipient, data.get("body"), data.get("client_id"))
        if not posted.duplicate:
            sender_sockets = user_key(user.id)
            if to_sid is not None:
                if to_sid != request.sid:  # the sending socket learns of it through the ack
                    self._broadcast("dm", posted.message, to=to_sid)
                self._broadcast("dm", posted.message, to=sender_sockets, skip_sid=[request.sid, to_sid])
            else:
                self._broadcast(
                    "dm",
                    posted.message,
                    to=user_key(recipient.id),
                    skip_sid=request.sid,
                )
                if recipient.id != user.id:
                    self._broadcast("dm", posted.message, to=sender_sockets, skip_sid=request.sid)
        return {"message": posted.message}

    @event_handler
    def on_history(self, data):
        data = validation.payload(data)
        self._socket()
        page, has_more = messages.room_history(data.get("room"), data.get("before"), data.get("limit"))
        return {"messages": page, "has_more": has_more}

    @event_handler
    def on_dm_history(self, data):
        data = validation.payload(data)
        me = self._fresh_user()
        other_name = data.get("user")
        if not isinstance(other_name, str):
            raise ServiceError("invalid", "user must be a username")
        other = users.get_user(other_name)
        page, has_more = messages.dm_history(me, other, data.get("before"), data.get("limit"))
        return {"messages": page, "has_more": has_more}

    @event_handler
    def on_sync(self, data):
        data = validation.payload(data)
        me = self._fresh_user()
        page, has_more = messages.sync(me, data.get("after"))
        return {"messages": page, "has_more": has_more}

    @event_handler
    def on_who(self, data):
        data = validation.payload(data)
        self._socket()
        sockets = self.presence.all()
        if data.get("room") is not None:
            room = rooms.get_room(data.get("room"))
            members = rooms.member_ids([room.id])[room.id]
            sockets = [s for s in sockets if s.user_id in members]
        by_user: dict[int, dict] = {}
        for info in sockets:
            entry = by_user.setdefault(info.user_id, {"user": info.user, "sids": []})
            entry["sids"].append(info.sid)
        listed = sorted(by_user.values(), key=lambda e: e["user"]["username"].lower())
        for entry in listed:
            entry["sids"].sort()
        return {"users": listed}

    @event_handler
    def on_read(self, data):
        data = validation.payload(data)
        info = self._socket()
        name = validation.room_name(data.get("room"))
        marker = rooms.mark_read(info.user_id, name, data.get("id"))
        return {"room": name, "last_read_id": marker}

    @event_handler
    def on_typing(self, data):
        data = validation.payload(data)
        info = self._socket()
        room = rooms.get_room(data.get("room"))
        active = validation.boolean(data.get("active"), "active")
        if not rooms.is_member(info.user_id, room.id):
            raise ServiceError("forbidden", f"join {room.name} first")
        self._broadcast(
            "typing",
            {"room": room.name, "user": info.user, "active": active},
            to=room_key(room.name),
            skip_sid=request.sid,
        )
        return None

    @event_handler
    def on_upload(self, data):
        user = self._fresh_user()
        # Uploads share the per-user limit of message and dm; every attempt counts.
        if not self.limiter.hit(f"send:{user.id}"):
            raise ServiceError(
                "rate_limited",
                f"slow down: at most {self.limiter.limit} messages in {self.limiter.window:g} seconds",
            )
        data = validation.payload(data)
        claimed = data.get("type")
        if claimed is not None and (not isinstance(claimed, str) or len(claimed) > 255):
            raise ServiceError("invalid", "type must be a string of at most 255 characters")
        attachment = files.save_upload(
            user,
            data.get("name"),
            data.get("data"),
            file_store(),
            upload_limits(current_app.config["SOCKET_UPLOAD_MAX_BYTES"]),
        )
        return {"attachment": attachment}

    @event_handler
    def on_search(self, data):
        data = validation.payload(data)
        me = self._fresh_user()
        found = search.search_messages(me, data.get("q"), data.get("room"), data.get("user"), data.get("limit"))
        return {"messages": found}
