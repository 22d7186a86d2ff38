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
from app.models import Message, Room, RoomMembership, User, dm_pair, utcnow
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
    """
    stored = _stored_by_client_id(session, batch)
    _load_related(session, batch)
    answers: list[tuple[Message | dict, bool]] = []
    inserted: dict[tuple[int, str], Message] = {}
    for draft in batch:
        key = (draft.sender_id, draft.client_id)
        if draft.client_id is not None and key in stored:
            answers.append((stored[key], True))
        elif draft.client_id is not None and key in inserted:
            answers.append((inserted[key], True))
        else:
            message = Message(
                sender_id=draft.sender_id,
                room_id=draft.room_id,
                recipient_id=draft.recipient_id,
                dm_pair=dm_pair(draft.sender_id, draft.recipient_id) if draft.recipient_id else None,
                body=draft.body,
                client_id=draft.client_id,
                created_at=utcnow(),
            )
            session.add(message)
            if draft.client_id is not None:
                inserted[key] = message
            answers.append((message, False))
    session.flush()
    return [(m if isinstance(m, dict) else m.to_dict(), duplicate) for m, duplicate in answers]


def _load_related(session, batch: list[Draft]) -> None:
    """Put every sender, recipient and room of the batch in the identity map with two queries,
    so building the MESSAGE payloads after the flush issues none."""
    user_ids = {d.sender_id for d in batch} | {d.recipient_id for d in batch if d.recipient_id}
    room_ids = {d.room_id for d in batch if d.room_id}
    session.scalars(sa.select(User).where(User.id.in_(user_ids))).all()
    if room_ids:
        session.scalars(sa.select(Room).where(Room.id.in_(room_ids))).all()


def _stored_by_client_id(session, batch: list[Draft]) -> dict[tuple[int, str], dict]:
    keys = {(d.sender_id, d.client_id) for d in batch if d.client_id is not None}
    if not keys:
        return {}
    conditions = [sa.and_(Message.sender_id == s, Message.client_id == c) for s, c in keys]
    rows = session.scalars(sa.select(Message).where(sa.or_(*conditions)))
    return {(m.sender_id, m.client_id): m.to_dict() for m in rows}


writer = MessageWriter()


def _check_can_post(user: User) -> None:
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
    stored = db.session.scalar(sa.select(Message).where(Message.sender_id == user.id, Message.client_id == cid))
    return Posted(stored.to_dict(), True) if stored is not None else None


def post_room_message(user: User, room_name, body, client_id=None) -> Posted:
    earlier = repeated(user, client_id)
    if earlier is not None:
        return earlier
    text = validation.body(body)
    cid = validation.client_id(client_id)
    room = get_room(room_name)
    _check_can_post(user)
    if db.session.get(RoomMembership, (user.id, room.id)) is None:
        raise ServiceError("forbidden", f"join {room.name} before posting to it")
    return writer.write(Draft(sender_id=user.id, room_id=room.id, body=text, client_id=cid))


def post_direct_message(user: User, recipient: User, body, client_id=None) -> Posted:
    earlier = repeated(user, client_id)
    if earlier is not None:
        return earlier
    text = validation.body(body)
    cid = validation.client_id(client_id)
    _check_can_post(user)
    return writer.write(Draft(sender_id=user.id, recipient_id=recipient.id, body=text, client_id=cid))


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


def delete_message(message_id) -> dict:
    message_id = validation.integer(message_id, "id", minimum=1)
    with write_transaction() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise ServiceError("not_found", "no such message")
        message.deleted = True
        result = message.to_dict()
    return result


def count_since(seconds: int = 60) -> int:
    since = utcnow() - timedelta(seconds=seconds)
    return db.session.scalar(sa.select(sa.func.count(Message.id)).where(Message.created_at >= since)) or 0
