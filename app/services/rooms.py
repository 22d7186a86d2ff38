"""Rooms and their persisted memberships."""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.database import write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import Message, Room, RoomMembership
from app.services import validation

GENERAL = "general"


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


def join_room(user_id: int, name) -> tuple[Room, bool]:
    """Make the user a member, creating the room if needed; returns (room, newly_joined)."""
    name = validation.room_name(name)
    for _attempt in range(2):
        try:
            with write_transaction() as session:
                room = session.scalar(sa.select(Room).where(Room.name == name))
                if room is None:
                    room = Room(name=name, created_by_id=user_id)
                    session.add(room)
                    session.flush()
                if session.get(RoomMembership, (user_id, room.id)) is not None:
                    return room, False
                session.add(RoomMembership(user_id=user_id, room_id=room.id))
            return room, True
        except IntegrityError:
            # Another process created the room or the membership first: read it again.
            continue
    raise ServiceError("conflict", "the room changed while joining; try again")


def leave_room(user_id: int, name) -> Room:
    room = get_room(name)
    if room.name == GENERAL:
        raise ServiceError("forbidden", "everyone stays in general")
    with write_transaction() as session:
        session.execute(
            sa.delete(RoomMembership).where(RoomMembership.user_id == user_id, RoomMembership.room_id == room.id)
        )
    return room


def rooms_of(user_id: int) -> list[Room]:
    stmt = (
        sa.select(Room)
        .join(RoomMembership, RoomMembership.room_id == Room.id)
        .where(RoomMembership.user_id == user_id)
        .order_by(Room.name)
    )
    return list(db.session.scalars(stmt))


def all_rooms() -> list[Room]:
    return list(db.session.scalars(sa.select(Room).order_by(Room.name)))


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
        {"name": room.name, "members": members[room.id], "online": online_counts.get(room.name, 0)} for room in rooms
    ]


def room_dicts(rooms: list[Room], online_user_ids: set[int]) -> list[dict]:
    """ROOM payloads: member counts and how many members are online now."""
    members = member_ids(room.id for room in rooms)
    return [
        {
            "name": room.name,
            "members": len(members[room.id]),
            "online": len(members[room.id] & online_user_ids),
        }
        for room in rooms
    ]


def mark_read(user_id: int, name, message_id) -> int:
    """Move the member's read marker forward (never back) to a message of the room; returns the marker."""
    room = get_room(name)
    message_id = validation.integer(message_id, "id", minimum=1)
    with write_transaction() as session:
        membership = session.get(RoomMembership, (user_id, room.id))
        if membership is None:
            raise ServiceError("forbidden", "only members keep a read marker")
        # Only a real message of this room may move the marker, so no id from the
        # future can mark messages read before they are written.
        message = session.get(Message, message_id)
        if message is None or message.room_id != room.id:
            raise ServiceError("not_found", f"no message {message_id} in {room.name}")
        membership.last_read_id = max(membership.last_read_id, message_id)
        marker = membership.last_read_id
    return marker


def unread_counts(user_id: int) -> dict[str, int]:
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
    return {name: count for name, count in db.session.execute(stmt)}
