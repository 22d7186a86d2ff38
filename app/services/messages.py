"""Posting, reading and catching up on messages.

Every message goes through ``MessageWriter``: callers queue a draft and the first
caller to take the write lock commits every queued draft in one transaction
(group commit), so a burst costs one commit instead of one per message. A
draft is answered only after that commit; ``app.database`` explains why the
ids that commit are always the next ones ``sync`` will see.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from app.database import write_lock, write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import Message, Room, RoomMembership, User, dm_pair, isoformat, utcnow
from app.services import validation
from app.services.rooms import get_room

SYNC_LIMIT = 500


@dataclass(eq=False)
class Draft:
    sender_id: int
    body: str
    client_id: str | None
    room_id: int | None = None
    recipient_id: int | None = None
    # USER payloads and room name the caller already holds, so the batch need not read them again.
    sender: dict | None = None
    recipient: dict | None = None
    room_name: str | None = None
    result: dict | None = None
    duplicate: bool = False
    error: BaseException | None = None
    done: bool = False


@dataclass
class Posted:
    """What a post returns: the MESSAGE and whether it was already stored (a repeated client_id)."""

    message: dict
    duplicate: bool


@dataclass
class MessageWriter:
    """Group commit of message drafts.

    ``ordered`` takes the PostgreSQL advisory lock that makes ids commit in
    allocation order; only a test that demonstrates the skip without it turns it off.
    """

    ordered: bool = True
    pending: list[Draft] = field(default_factory=list)
    pending_lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, draft: Draft) -> Posted:
        with self.pending_lock:
            self.pending.append(draft)
        with write_lock():
            if not draft.done:
                with self.pending_lock:
                    batch, self.pending = self.pending, []
                self._commit(batch)
        if draft.error is not None:
            raise draft.error
        assert draft.result is not None
        return Posted(draft.result, draft.duplicate)

    def _commit(self, batch: list[Draft]) -> None:
        """Store the batch and answer every draft in it, each exactly once."""
        try:
            with write_transaction(ordered=self.ordered) as session:
                answers = _insert(session, batch)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:
                # One bad draft (its room deleted meanwhile, say) must not fail the others.
                for draft in batch:
                    self._commit([draft])
            return
        except BaseException as exc:
            # The committing greenlet is being killed: the drafts it carried learn of it.
            _fail(batch, exc)
            raise
        # Only now, after the commit, does any draft get its answer.
        for draft, (message, duplicate) in zip(batch, answers, strict=True):
            draft.result, draft.duplicate, draft.done = message, duplicate, True


def _fail(batch: list[Draft], exc: BaseException) -> None:
    for draft in batch:
        draft.result, draft.error, draft.done = None, exc, True


def _insert(session, batch: list[Draft]) -> list[tuple[dict, bool]]:
    """Insert the drafts whose client_id is new; answers (MESSAGE, duplicate) per draft, in order.

    A client_id repeated within the batch, or already stored, answers with the one stored message.
    New rows go in with one Core INSERT ... RETURNING for the whole batch, and their MESSAGE
    payloads are built from the drafts and two small lookups instead of loading ORM objects back.
    """
    stored = _stored_by_client_id(session, batch)
    users, room_names = _related(session, batch)
    answers: list[tuple[dict, bool] | None] = [None] * len(batch)
    first_with_key: dict[tuple[int, str], int] = {}
    new_rows: list[tuple[int, dict]] = []
    for index, draft in enumerate(batch):
        key = (draft.sender_id, draft.client_id)
        if draft.client_id is not None and key in stored:
            answers[index] = (stored[key], True)
        elif draft.client_id is not None and key in first_with_key:
            continue  # answered below with the message its first draft stores
        else:
            new_rows.append(
                (
                    index,
                    {
                        "sender_id": draft.sender_id,
                        "room_id": draft.room_id,
                        "recipient_id": draft.recipient_id,
                        "dm_pair": dm_pair(draft.sender_id, draft.recipient_id) if draft.recipient_id else None,
                        "body": draft.body,
                        "client_id": draft.client_id,
                        "created_at": utcnow(),
                        "deleted": False,
                    },
                )
            )
            if draft.client_id is not None:
                first_with_key[key] = index
    if new_rows:
        table = Message.__table__
        statement = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = session.execute(statement, [row for _, row in new_rows]).scalars().all()
        for (index, row), message_id in zip(new_rows, ids, strict=True):
            answers[index] = (_message_dict(message_id, row, users, room_names), False)
    for index, draft in enumerate(batch):
        if answers[index] is None:
            first = answers[first_with_key[(draft.sender_id, draft.client_id)]]
            answers[index] = (first[0], True)
    return answers


def _message_dict(message_id: int, row: dict, users: dict[int, dict], room_names: dict[int, str]) -> dict:
    """The MESSAGE of a row just inserted: the same shape as ``Message.to_dict``."""
    return {
        "id": message_id,
        "room": room_names[row["room_id"]] if row["room_id"] is not None else None,
        "sender": dict(users[row["sender_id"]]),
        "recipient": dict(users[row["recipient_id"]]) if row["recipient_id"] is not None else None,
        "body": row["body"],
        "client_id": row["client_id"],
        "created_at": isoformat(row["created_at"]),
        "deleted": False,
    }


def _related(session, batch: list[Draft]) -> tuple[dict[int, dict], dict[int, str]]:
    """USER payloads of every sender and recipient and the name of every room of the batch,
    read from the database only where a draft did not bring them."""
    users: dict[int, dict] = {}
    room_names: dict[int, str] = {}
    for draft in batch:
        if draft.sender is not None:
            users[draft.sender_id] = draft.sender
        if draft.recipient is not None and draft.recipient_id is not None:
            users[draft.recipient_id] = draft.recipient
        if draft.room_name is not None and draft.room_id is not None:
            room_names[draft.room_id] = draft.room_name
    user_ids = {d.sender_id for d in batch} | {d.recipient_id for d in batch if d.recipient_id}
    missing_users = user_ids - users.keys()
    if missing_users:
        rows = session.execute(sa.select(User.id, User.username, User.is_admin).where(User.id.in_(missing_users)))
        users.update({user_id: {"id": user_id, "username": name, "is_admin": admin} for user_id, name, admin in rows})
    missing_rooms = {d.room_id for d in batch if d.room_id} - room_names.keys()
    if missing_rooms:
        room_names.update(session.execute(sa.select(Room.id, Room.name).where(Room.id.in_(missing_rooms))).all())
    return users, room_names


def _stored_by_client_id(session, batch: list[Draft]) -> dict[tuple[int, str], dict]:
    keys = {(d.sender_id, d.client_id) for d in batch if d.client_id is not None}
    if not keys:
        return {}
    conditions = [sa.and_(Message.sender_id == s, Message.client_id == c) for s, c in keys]
    # Ids first, without the joined loads: almost every batch repeats no client_id.
    ids = session.scalars(sa.select(Message.id).where(sa.or_(*conditions))).all()
    if not ids:
        return {}
    rows = session.scalars(sa.select(Message).where(Message.id.in_(ids)))
    return {(m.sender_id, m.client_id): m.to_dict() for m in rows}


writer = MessageWriter()


def check_can_post(user: User) -> None:
    """Banned and muted users may not post; the one place those refusals are worded."""
    if user.banned:
        raise ServiceError("banned", "this account is banned")
    if user.is_muted():
        raise ServiceError(
            "muted",
            f"you are muted until {user.muted_until.isoformat(timespec='seconds')}Z",
        )


def repeated(user: User, client_id) -> Posted | None:
    """The message an earlier send with this client_id stored, if any.

    A retry (after a lost ack, often from a new socket) gets the stored message back
    whatever its new payload, so it is looked up before the payload is judged.
    """
    cid = validation.client_id(client_id)
    if cid is None:
        return None
    # The id alone first: the full row, with its joined sender, recipient and room, only for a repeat.
    stored_id = db.session.scalar(sa.select(Message.id).where(Message.sender_id == user.id, Message.client_id == cid))
    if stored_id is None:
        return None
    return Posted(db.session.get(Message, stored_id).to_dict(), True)


def post_room_message(user: User, room_name, body, client_id=None) -> Posted:
    earlier = repeated(user, client_id)
    if earlier is not None:
        return earlier
    text = validation.body(body)
    cid = validation.client_id(client_id)
    room = get_room(room_name)
    check_can_post(user)
    if db.session.get(RoomMembership, (user.id, room.id)) is None:
        raise ServiceError("forbidden", f"join {room.name} before posting to it")
    return writer.write(
        Draft(sender_id=user.id, room_id=room.id, body=text, client_id=cid, sender=user.to_dict(), room_name=room.name)
    )


def post_direct_message(user: User, recipient: User, body, client_id=None) -> Posted:
    earlier = repeated(user, client_id)
    if earlier is not None:
        return earlier
    text = validation.body(body)
    cid = validation.client_id(client_id)
    check_can_post(user)
    return writer.write(
        Draft(
            sender_id=user.id,
            recipient_id=recipient.id,
            body=text,
            client_id=cid,
            sender=user.to_dict(),
            recipient=recipient.to_dict(),
        )
    )


def _page(stmt, before: int | None, limit: int) -> tuple[list[dict], bool]:
    """A keyset page read backwards from ``before``, returned oldest first."""
    if before is not None:
        stmt = stmt.where(Message.id < before)
    rows = list(db.session.scalars(stmt.order_by(Message.id.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    return [m.to_dict() for m in reversed(rows[:limit])], has_more


def room_history(room_name, before=None, limit=None) -> tuple[list[dict], bool]:
    room = get_room(room_name)
    before = validation.optional_integer(before, "before", minimum=1)
    return _page(
        sa.select(Message).where(Message.room_id == room.id),
        before,
        validation.limit(limit),
    )


def dm_history(user: User, other: User, before=None, limit=None) -> tuple[list[dict], bool]:
    before = validation.optional_integer(before, "before", minimum=1)
    stmt = sa.select(Message).where(Message.dm_pair == dm_pair(user.id, other.id))
    return _page(stmt, before, validation.limit(limit))


def sync(user: User, after) -> tuple[list[dict], bool]:
    """Every room message of the user's rooms and every DM of the user with id > after."""
    after = validation.integer(after, "after", minimum=0)
    member_rooms = sa.select(RoomMembership.room_id).where(RoomMembership.user_id == user.id)
    stmt = (
        sa.select(Message)
        .where(
            Message.id > after,
            sa.or_(
                Message.room_id.in_(member_rooms),
                Message.recipient_id == user.id,
                sa.and_(Message.sender_id == user.id, Message.recipient_id.is_not(None)),
            ),
        )
        .order_by(Message.id)
        .limit(SYNC_LIMIT + 1)
    )
    rows = list(db.session.scalars(stmt))
    return [m.to_dict() for m in rows[:SYNC_LIMIT]], len(rows) > SYNC_LIMIT


def count_since(seconds: int = 60) -> int:
    since = utcnow() - timedelta(seconds=seconds)
    return db.session.scalar(sa.select(sa.func.count(Message.id)).where(Message.created_at >= since)) or 0
