"""The `/` namespace: parse each event, call the service action that holds its rules, return the ack."""

from __future__ import annotations

from typing import TypeVar

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, join_room

from app.errors import ServiceError
from app.extensions import db
from app.files import file_store, upload_limits
from app.models import User
from app.services import files, messages, rooms, search, users, validation
from app.services.hot_cache import UserState, hot_cache
from app.services.notifier import room_key, user_key
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

Sender = TypeVar("Sender", User, UserState)


class ChatNamespace(GuardedNamespace):
    def __init__(
        self,
        namespace: str,
        *,
        presence: PresenceStore,
        limiter: RateLimiter,
        room_creation_limiter: RateLimiter | None = None,
    ):
        super().__init__(namespace)
        self.presence = presence
        self.limiter = limiter
        self.room_creation_limiter = room_creation_limiter
        # Per-socket facts, read once at connect: sid -> USER of the socket's user.
        self.identities: dict[str, dict] = {}

    # -- connection ---------------------------------------------------------

    def on_connect(self, auth=None):
        sid = request.sid
        # Everything that can fail runs before the socket is registered, so a failed
        # connect is refused cleanly and never leaves a user "online" without a socket.
        try:
            user = connecting_user(auth)
            member_rooms = rooms.member_rooms(user.id)
            hot_cache().remember_rooms_of(user.id, member_rooms)
            user_dict = user.to_dict()
            session_payload = {
                "user": user_dict,
                "sid": sid,
                "rooms": self._session_rooms(user.id, member_rooms),
                # Every member room, zero included, so clients can trust the whole map.
                "unread": {room.name: room.unread for room in member_rooms},
                "mentions": {room.name: room.mentions for room in member_rooms},
                "dms": messages.direct_conversations(user.id),
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
        self.identities[sid] = user_dict
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
            self.identities.pop(sid, None)
            self.presence.remove(sid)
            raise ConnectionRefusedError("banned")
        self.emit("session", session_payload, room=sid)
        if first:
            self.emit("presence", {"user": user_dict, "online": True})

    def on_disconnect(self, reason=None):
        self.identities.pop(request.sid, None)
        info, last = self.presence.remove(request.sid)
        if info is not None and last:
            self.emit("presence", {"user": info.user, "online": False})

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _banned_meanwhile(user_id: int) -> bool:
        db.session.rollback()  # a fresh snapshot: the ban may have committed after ours began
        # Read through the worker's cache, which keeps it: the socket's first `message` reads nothing.
        state = hot_cache().read_user(user_id)
        return state is not None and state.banned

    def _me(self) -> dict:
        """The USER of this socket, from the socket's own record (no shared-store read)."""
        identity = self.identities.get(request.sid)  # type: ignore[attr-defined]  # set by Flask-SocketIO
        if identity is None:
            raise ServiceError("unauthorized", "this socket is not signed in")
        return identity

    def _fresh_user(self) -> User:
        """The user as the database has them now (bans and mutes change while connected)."""
        user = db.session.get(User, self._me()["id"])
        if user is None:
            raise ServiceError("unauthorized", "this account no longer exists")
        if user.banned:
            raise ServiceError("banned", users.ban_message(user))
        return user

    def _sender(self, *, allow_muted: bool = False) -> User:
        """The user of an `edit`, `delete`, `react` or `upload`, counted against the send limit.

        Every attempt that passes authentication counts, malformed ones included; mutes answer
        before the rate limit, except where ``allow_muted`` (a muted user may still delete).
        """
        return self._within_send_limit(self._fresh_user(), allow_muted=allow_muted)

    def _cached_sender(self) -> UserState:
        """The user of a `message` or `dm`, as `_sender`, from this worker's cache (app/services/hot_cache.py).

        The writer checks ban and mute again inside the write, so the cache only answers sooner.
        """
        user = hot_cache().user(self._me()["id"])
        if user is None:
            raise ServiceError("unauthorized", "this account no longer exists")
        if user.banned:
            raise ServiceError("banned", users.ban_message(user))
        return self._within_send_limit(user)

    def _within_send_limit(self, user: Sender, *, allow_muted: bool = False) -> Sender:
        within_limit = self.limiter.hit(f"send:{user.id}")
        if not allow_muted:
            messages.check_can_post(user)
        if not within_limit:
            raise ServiceError(
                "rate_limited",
                f"slow down: at most {self.limiter.limit} messages in {self.limiter.window:g} seconds",
            )
        return user

    def _may_create_room(self, user_id: int):
        def check() -> None:
            limiter = self.room_creation_limiter
            if limiter is not None and not limiter.hit(f"rooms:{user_id}"):
                raise ServiceError(
                    "rate_limited",
                    f"at most {limiter.limit} new rooms in {limiter.window / 3600:g} hours; join an existing one",
                )

        return check

    def _session_rooms(self, user_id: int, member_rooms: list[rooms.MemberRoom]) -> list[dict]:
        """ROOM payloads for ``session``, counting the connecting user online in each member room.

        A user with a socket already has it in every member room (join and leave move all of a
        user's sockets), so only a user's first socket adds one to each count.
        """
        online = self.presence.online_counts([room.name for room in member_rooms])
        first = not self.presence.sids_of(user_id)
        return [
            {
                "name": room.name,
                "members": room.members,
                "online": online.get(room.name, 0) + int(first),
                "topic": room.topic,
                "private": room.private,
            }
            for room in member_rooms
        ]

    def _room_payload(self, room) -> dict:
        return rooms.room_dicts_with_online([room], self.presence.online_counts([room.name]))[0]

    # -- events: rooms --------------------------------------------------------

    @event_handler
    def on_join(self, data):
        data = validation.payload(data)
        me = self._me()
        room, _joined = rooms.join_room(
            me["id"],
            data.get("room"),
            private=data.get("private"),
            topic=data.get("topic"),
            may_create=self._may_create_room(me["id"]),
            actor_sid=request.sid,
        )
        recent, _has_more = messages.room_history(room.name)
        return {"room": self._room_payload(room), "messages": recent}

    @event_handler
    def on_leave(self, data):
        data = validation.payload(data)
        rooms.leave_room(self._me()["id"], data.get("room"))
        return None

    @event_handler
    def on_rooms(self, data):
        data = validation.payload(data)
        found = rooms.directory(self._me()["id"], data.get("q"))
        return {"rooms": rooms.room_dicts_with_online(found, self.presence.online_counts([r.name for r in found]))}

    @event_handler
    def on_invite(self, data):
        data = validation.payload(data)
        room, _invited = rooms.invite(self._me()["id"], data.get("room"), data.get("user"))
        return {"room": self._room_payload(room)}

    @event_handler
    def on_topic(self, data):
        data = validation.payload(data)
        room = rooms.set_topic(self._me()["id"], data.get("room"), data.get("topic"))
        return {"room": self._room_payload(room)}

    # -- events: messages -----------------------------------------------------

    @event_handler
    def on_message(self, data):
        user = self._cached_sender()
        data = validation.payload(data)
        posted = messages.post_room_message(
            user,
            data.get("room"),
            data.get("body"),
            data.get("client_id"),
            reply_to=data.get("reply_to"),
            attachments=data.get("attachments"),
            actor_sid=request.sid,
        )
        return {"message": posted.message}

    @event_handler
    def on_dm(self, data):
        user = self._cached_sender()
        data = validation.payload(data)
        to_sid = data.get("to_sid")
        try:
            recipient = self._recipient(to_sid, data.get("to_user"))
        except ServiceError:
            # A retry must not depend on its recipient's socket still being there.
            earlier = messages.repeated(user, data.get("client_id"))
            if earlier is not None:
                return {"message": earlier.message}
            raise
        posted = messages.post_direct_message(
            user,
            recipient,
            data.get("body"),
            data.get("client_id"),
            to_sid=to_sid,
            reply_to=data.get("reply_to"),
            attachments=data.get("attachments"),
            actor_sid=request.sid,
        )
        return {"message": posted.message}

    def _recipient(self, to_sid, to_user) -> UserState:
        if (to_sid is None) == (to_user is None):
            raise ServiceError("invalid", "give exactly one of to_sid and to_user")
        if to_sid is not None:
            if not isinstance(to_sid, str):
                raise ServiceError("invalid", "to_sid must be a string")
            target = self.presence.get(to_sid)
            recipient = hot_cache().user(target.user_id) if target is not None else None
            if recipient is None:
                raise ServiceError("not_found", "no connected socket with that sid")
            return recipient
        if not isinstance(to_user, str):
            raise ServiceError("invalid", "to_user must be a username")
        found = hot_cache().user_by_name(to_user) if validation.USERNAME_RE.fullmatch(to_user) else None
        if found is None:
            raise ServiceError("not_found", "no such user")
        return found

    @event_handler
    def on_edit(self, data):
        user = self._sender()
        data = validation.payload(data)
        return {"message": messages.edit_message(user, data.get("id"), data.get("body"), actor_sid=request.sid)}

    @event_handler
    def on_delete(self, data):
        user = self._sender(allow_muted=True)
        data = validation.payload(data)
        return {"message": messages.delete_message(user, data.get("id"), actor_sid=request.sid)}

    @event_handler
    def on_react(self, data):
        user = self._sender()
        data = validation.payload(data)
        message = messages.react(user, data.get("id"), data.get("emoji"), data.get("active"), actor_sid=request.sid)
        return {"message": message}

    @event_handler
    def on_history(self, data):
        data = validation.payload(data)
        me = self._me()
        page, has_more = messages.room_history(
            data.get("room"), data.get("before"), data.get("limit"), user_id=me["id"]
        )
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
        if "after_rev" in data:
            page, has_more, rev = messages.sync_changes(me, data.get("after_rev"))
            return {"messages": page, "has_more": has_more, "rev": rev}
        page, has_more = messages.sync(me, data.get("after"))
        return {"messages": page, "has_more": has_more}

    @event_handler
    def on_who(self, data):
        data = validation.payload(data)
        me = self._me()
        sockets = self.presence.all()
        if data.get("room") is not None:
            room = rooms.get_room(data.get("room"))
            rooms.check_may_read(me["id"], room)
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
        me = self._me()
        if "user" in data:
            if "room" in data:
                raise ServiceError("invalid", "give one of room and user")
            other_name = data.get("user")
            if not isinstance(other_name, str):
                raise ServiceError("invalid", "user must be a username")
            other = hot_cache().user_by_name(other_name) if validation.USERNAME_RE.fullmatch(other_name) else None
            if other is None:
                raise ServiceError("not_found", "no such user")
            marker = messages.mark_dm_read(me["id"], other, data.get("id"))
            return {"user": other.username, "last_read_id": marker}
        name = validation.room_name(data.get("room"))
        marker = rooms.mark_read(me["id"], name, data.get("id"))
        return {"room": name, "last_read_id": marker}

    @event_handler
    def on_typing(self, data):
        data = validation.payload(data)
        me = self._me()
        cache = hot_cache()
        room = cache.room(validation.room_name(data.get("room")))
        if room is None:
            raise ServiceError("not_found", f"no room named {data.get('room')}")
        active = validation.boolean(data.get("active"), "active")
        if not cache.is_member(me["id"], room.id):
            raise ServiceError("forbidden", f"join {room.name} first")
        self.socketio.emit(
            "typing",
            {"room": room.name, "user": me, "active": active},
            to=room_key(room.name),
            namespace=self.namespace,
            skip_sid=request.sid,
        )
        return None

    @event_handler
    def on_upload(self, data):
        user = self._sender()
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
