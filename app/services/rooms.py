"""Rooms and their persisted memberships: joining, leaving, private rooms, invitations, topics, read markers."""

from collections.abc import Callable, Iterable
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.database import write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import Mention, Message, Room, RoomMembership, User
from app.services import validation
from app.services.hot_cache import changed, hot_cache, transaction_generation
from app.services.notifier import notifier
from app.services.read_markers import MarkRequest, read_markers

GENERAL = "general"
MAX_TOPIC = 250
MAX_DIRECTORY_QUERY = 64


def ensure_general(session: Session) -> Room:
    room = session.scalar(sa.select(Room).where(Room.name == GENERAL))
    if room is None:
        room = Room(name=GENERAL)
        session.add(room)
        session.flush()
    return room


def find_room(name: str) -> Room | None:
    return db.session.scalar(sa.select(Room).where(Room.name == name))


def get_room(name) -> Room:
    room = find_room(validation.room_name(name))
    if room is None:
        raise ServiceError("not_found", f"no room named {name}")
    return room


def is_member(user_id: int, room_id: int) -> bool:
    return db.session.get(RoomMembership, (user_id, room_id)) is not None


def topic_text(value) -> str:
    if not isinstance(value, str):
        raise ServiceError("invalid", "topic must be a string")
    text = value.strip()
    if len(text) > MAX_TOPIC:
        raise ServiceError("too_large", f"topics are limited to {MAX_TOPIC} characters")
    if not validation.storable(text) or any(ch in text for ch in "\r\n"):
        raise ServiceError("invalid", "a topic is one line of text")
    return text


def check_may_read(user_id: int, room: Room) -> None:
    """Public rooms are read by anyone signed in; private ones by their members only."""
    if room.private and not is_member(user_id, room.id):
        raise ServiceError("forbidden", f"{room.name} is private")


def join_room(
    user_id: int,
    name,
    *,
    private=None,
    topic=None,
    may_create: Callable[[], None] | None = None,
    actor_sid: str | None = None,
) -> tuple[Room, bool]:
    """Make the user a member, creating the room if needed; returns (room, newly_joined).

    ``private`` and ``topic`` apply to a room this call creates; ``may_create`` is asked first and
    refuses by raising (the per-user allowance of new rooms). A private room is joined by invitation
    only. Every socket of the user enters the room; the others than ``actor_sid`` get `room_joined`.
    """
    name = validation.room_name(name)
    private = False if private is None else validation.boolean(private, "private")
    topic = "" if topic is None else topic_text(topic)
    existing = find_room(name)
    if existing is None and may_create is not None:
        may_create()
    for _attempt in range(2):
        try:
            with write_transaction() as session:
                began = transaction_generation()
                room = session.scalar(sa.select(Room).where(Room.name == name))
                created = room is None
                if room is None:
                    room = Room(name=name, created_by_id=user_id, private=private, topic=topic)
                    session.add(room)
                    session.flush()
                room_id = room.id
                joined = session.get(RoomMembership, (user_id, room_id)) is None
                if joined:
                    if room.private and not created:
                        raise ServiceError("forbidden", f"{name} is private: ask a member to invite you")
                    session.add(RoomMembership(user_id=user_id, room_id=room_id))
            if not joined:
                hot_cache().remember_member(user_id, room_id, began)
                return room, False
            changed(rooms=[room.name] if created else [], memberships=[(user_id, room_id)])
            # The user's first message here, usually next, then reads no membership.
            hot_cache().remember_member(user_id, room_id, began, own_invalidations=1)
            _announce_joined(user_id, room, actor_sid)
            return room, True
        except IntegrityError:
            # Another process created the room or the membership first: read it again.
            continue
    raise ServiceError("conflict", "the room changed while joining; try again")


def _announce_joined(user_id: int, room: Room, actor_sid: str | None) -> None:
    notify = notifier()
    notify.join_user(user_id, room.name)
    notify.to_users([user_id], "room_joined", {"room": room_dict(room)}, skip_sid=actor_sid)


def invite(user_id: int, name, username) -> tuple[Room, bool]:
    """Any member may add another user; returns (room, newly_invited)."""
    room = get_room(name)
    other_name = validation.username(username, "user")
    with write_transaction() as session:
        if session.get(RoomMembership, (user_id, room.id)) is None:
            raise ServiceError("forbidden", f"only members of {room.name} may invite to it")
        other = session.scalar(sa.select(User).where(User.username_key == other_name.lower()))
        if other is None:
            raise ServiceError("not_found", f"no user named {other_name}")
        other_id = other.id
        if session.get(RoomMembership, (other_id, room.id)) is not None:
            return room, False
        session.add(RoomMembership(user_id=other_id, room_id=room.id))
    changed(memberships=[(other_id, room.id)])
    _announce_joined(other_id, room, None)
    return room, True


def set_topic(user_id: int, name, topic) -> Room:
    room = get_room(name)
    text = topic_text(topic)
    with write_transaction() as session:
        if session.get(RoomMembership, (user_id, room.id)) is None:
            raise ServiceError("forbidden", f"only members of {room.name} may change its topic")
        stored = session.get(Room, room.id)
        if stored is None:
            raise ServiceError("not_found", f"no room named {room.name}")
        updated = stored.topic != text
        stored.topic = text
    if updated:
        changed(rooms=[room.name])
        notifier().to_room(room.name, "room_updated", {"room": room_dict(room)})
    return room


def directory(user_id: int, query=None) -> list[Room]:
    """Every public room and every private room the user is a member of, by name, filtered by substring."""
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise ServiceError("invalid", "q must be a string")
    query = query.strip().lower()
    if len(query) > MAX_DIRECTORY_QUERY:
        raise ServiceError("too_large", f"q is limited to {MAX_DIRECTORY_QUERY} characters")
    mine = sa.select(RoomMembership.room_id).where(RoomMembership.user_id == user_id)
    stmt = sa.select(Room).where(sa.or_(Room.private.is_(False), Room.id.in_(mine))).order_by(Room.name)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Room.name.like(f"%{escaped}%", escape="\\"))
    return list(db.session.scalars(stmt))


def leave_room(user_id: int, name) -> Room:
    room = get_room(name)
    if room.name == GENERAL:
        raise ServiceError("forbidden", "everyone stays in general")
    with write_transaction() as session:
        session.execute(
            sa.delete(RoomMembership).where(RoomMembership.user_id == user_id, RoomMembership.room_id == room.id)
        )
    changed(memberships=[(user_id, room.id)])
    notifier().leave_user(user_id, room.name)
    return room


def rooms_of(user_id: int) -> list[Room]:
    stmt = (
        sa.select(Room)
        .join(RoomMembership, RoomMembership.room_id == Room.id)
        .where(RoomMembership.user_id == user_id)
        .order_by(Room.name)
    )
    return list(db.session.scalars(stmt))


def _member_rooms_statement() -> sa.Select:
    """Every member room of ``:user_id`` with its member count, unread count and unread mentions."""
    user_id: sa.BindParameter[int] = sa.bindparam("user_id", type_=sa.Integer)
    mine = aliased(RoomMembership, name="mine")
    other = aliased(RoomMembership, name="other")
    unread = (
        Message.room_id == mine.room_id,
        Message.id > mine.last_read_id,
        Message.sender_id != user_id,
        Message.deleted.is_(False),
    )
    mentioned = sa.and_(Mention.message_id == Message.id, Mention.user_id == user_id, Mention.current)
    return (
        sa.select(
            Room.id,
            Room.name,
            Room.topic,
            Room.private,
            sa.select(sa.func.count()).where(other.room_id == mine.room_id).scalar_subquery().label("members"),
            sa.select(sa.func.count(Message.id)).where(*unread).scalar_subquery().label("unread"),
            sa.select(sa.func.count(Message.id))
            .join(Mention, mentioned)
            .where(*unread)
            .scalar_subquery()
            .label("mentions"),
        )
        .join(mine, mine.room_id == Room.id)
        .where(mine.user_id == user_id)
        .order_by(Room.name)
    )


# Built once: a statement object keeps its cache key, which SQLAlchemy otherwise computes per call.
MEMBER_ROOMS = _member_rooms_statement()


class MemberRoom(NamedTuple):
    id: int
    name: str
    topic: str
    private: bool
    members: int
    unread: int
    mentions: int


def member_rooms(user_id: int) -> list[MemberRoom]:
    """The user's rooms by name with their counts, in one statement: what a socket needs at connect.

    ``unread`` and ``mentions`` count as ``unread_counts`` does, zero included.
    """
    return [MemberRoom(*row) for row in db.session.execute(MEMBER_ROOMS, {"user_id": user_id})]


def all_rooms() -> list[Room]:
    """Every room, private ones included: for admins."""
    return list(db.session.scalars(sa.select(Room).order_by(Room.name)))


def room_dict(room: Room) -> dict:
    """One ROOM, its online count from the presence store of this app (0 where there is none)."""
    presence = current_app.extensions.get("switchboard.presence")
    online = presence.online_counts([room.name]) if presence is not None else {}
    return room_dicts_with_online([room], online)[0]


def member_ids(room_ids: Iterable[int]) -> dict[int, set[int]]:
    ids = list(room_ids)
    members: dict[int, set[int]] = {room_id: set() for room_id in ids}
    if ids:
        rows = db.session.execute(
            sa.select(RoomMembership.room_id, RoomMembership.user_id).where(RoomMembership.room_id.in_(ids))
        )
        for room_id, user_id in rows:
            members[room_id].add(user_id)
    return members


def member_counts(room_ids: Iterable[int]) -> dict[int, int]:
    """Members per room, counted in SQL: one row per room, not one per membership."""
    ids = list(room_ids)
    counts = dict.fromkeys(ids, 0)
    if ids:
        stmt = (
            sa.select(RoomMembership.room_id, sa.func.count())
            .where(RoomMembership.room_id.in_(ids))
            .group_by(RoomMembership.room_id)
        )
        counts.update({room_id: count for room_id, count in db.session.execute(stmt)})
    return counts


def room_dicts_with_online(rooms: list[Room], online_counts: dict[str, int]) -> list[dict]:
    """ROOM payloads from online counts the caller already has (the presence store keeps them per room)."""
    members = member_counts(room.id for room in rooms)
    return [
        {
            "name": room.name,
            "members": members[room.id],
            "online": online_counts.get(room.name, 0),
            "topic": room.topic,
            "private": room.private,
        }
        for room in rooms
    ]


def room_dicts(rooms: list[Room], online_user_ids: set[int]) -> list[dict]:
    """ROOM payloads: member counts and how many members are online now."""
    members = member_ids(room.id for room in rooms)
    return [
        {
            "name": room.name,
            "members": len(members[room.id]),
            "online": len(members[room.id] & online_user_ids),
            "topic": room.topic,
            "private": room.private,
        }
        for room in rooms
    ]


def mark_read(user_id: int, name, message_id) -> int:
    """Move the member's read marker forward (never back) to a message of the room; returns the marker.

    Written with the other markers that arrive within a few milliseconds (app/services/read_markers.py).
    """
    room = hot_cache().room(validation.room_name(name))
    if room is None:
        raise ServiceError("not_found", f"no room named {name}")
    message_id = validation.integer(message_id, "id", minimum=1)
    return read_markers().mark(MarkRequest(user_id, message_id, room_id=room.id, room_name=room.name))


def unread_counts(user_id: int, *, mentions_only: bool = False) -> dict[str, int]:
    """Unread messages per member room: above the read marker, not deleted, not the user's own;
    with ``mentions_only``, only those that mention the user now."""
    stmt = (
        sa.select(Room.name, sa.func.count(Message.id))
        .select_from(RoomMembership)
        .join(Room, Room.id == RoomMembership.room_id)
        .join(
            Message,
            sa.and_(
                Message.room_id == RoomMembership.room_id,
                Message.id > RoomMembership.last_read_id,
                Message.sender_id != user_id,
                Message.deleted.is_(False),
            ),
        )
        .where(RoomMembership.user_id == user_id)
        .group_by(Room.name)
    )
    if mentions_only:
        stmt = stmt.join(
            Mention, sa.and_(Mention.message_id == Message.id, Mention.user_id == user_id, Mention.current)
        )
    return {name: count for name, count in db.session.execute(stmt)}
