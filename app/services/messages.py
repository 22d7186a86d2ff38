"""Posting, editing, deleting and reacting to messages; reading and catching up on them.

Every message goes through ``MessageWriter``: callers queue a draft and the first
caller to take the write lock commits every queued draft in one transaction
(group commit), so a burst costs one commit instead of one per message. A
draft is answered only after that commit; ``app.database`` explains why the
ids that commit are always the next ones ``sync`` will see.

Every change to a message (creation, edit, deletion, reaction) takes the next ``rev`` of one
server-wide counter inside an ordered write transaction, so revs, like ids, become visible in
increasing order and ``sync {"after_rev"}`` is exact. Each action publishes its consequences
through the notifier only after its commit.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm

from app import metrics
from app.database import end_read_snapshot, write_connection, write_lock, write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import (
    DirectReadMarker,
    Mention,
    Message,
    Reaction,
    Room,
    RoomMembership,
    User,
    dm_pair,
    isoformat,
    utcnow,
)
from app.services import files, validation
from app.services.hot_cache import UserState, hot_cache
from app.services.notifier import notifier
from app.services.read_markers import MarkRequest, read_markers
from app.services.rooms import check_may_read, get_room, unread_counts

log = logging.getLogger("switchboard.messages")

SYNC_LIMIT = 500
MAX_EMOJI = 32
MAX_EMOJI_PER_MESSAGE = 20
# Characters that may continue a username after an @: a shorter name only counts when one of the
# separators, not a letter or digit, follows it.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
MAX_USERNAME = 32
MIN_USERNAME = 3


@dataclass(eq=False)
class Draft:
    sender_id: int
    body: str
    client_id: str | None
    room_id: int | None = None
    recipient_id: int | None = None
    # USER payloads and room name the caller already holds (the payloads are read again inside the
    # write with the ban, mute and membership checks, so they are exact at the commit).
    sender: dict | None = None
    recipient: dict | None = None
    room_name: str | None = None
    reply_to_id: int | None = None
    # (user id, canonical username) of everyone the body mentions, in order of first appearance.
    mentions: list[tuple[int, str]] = field(default_factory=list)
    # The mentioned members of the room, who get the `mention` event once the message commits.
    notified: set[int] = field(default_factory=set)
    # Uploads of the sender to claim in the same transaction as the insert.
    attachment_ids: list[int] = field(default_factory=list)
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
        end_read_snapshot()
        with self.pending_lock:
            self.pending.append(draft)
        # Let the handlers already started on this worker reach the writer before it takes the
        # batch: nothing else runs while a SQLite batch commits, so without this pause every
        # batch there is one message paying its own COMMIT (an fsync). In the server time.sleep
        # is gevent's (monkey-patched): a pass through the hub's waiting callbacks.
        time.sleep(0)
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
        started = time.perf_counter()
        try:
            with write_connection(ordered=self.ordered) as connection:
                answers = _insert(connection, batch)
            metrics.record_commit(len(batch), time.perf_counter() - started)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:
                # One bad draft (its room deleted meanwhile, say) must not fail the others.
                log.warning("a batch of %d messages failed (%s); each is written on its own", len(batch), exc)
                for draft in batch:
                    self._commit([draft])
            return
        except BaseException as exc:
            # The committing greenlet is being killed: the drafts it carried learn of it.
            _fail(batch, exc)
            raise
        # Only now, after the commit, does any draft get its answer.
        for draft, answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                draft.result, draft.error, draft.done = None, answer, True
            else:
                draft.result, draft.duplicate, draft.done = answer[0], answer[1], True


def _fail(batch: list[Draft], exc: BaseException) -> None:
    for draft in batch:
        draft.result, draft.error, draft.done = None, exc, True


Answer = tuple[dict, bool] | ServiceError


# The writer's statements, built once: executing the same statement object again reuses its
# memoized cache key and its compiled form, where a statement built per batch would be walked
# again to compute its cache key every time. They run on the write's own Connection
# (``write_connection``), past the ORM, since they read and write plain rows.
_messages = cast(sa.Table, Message.__table__)
_users = cast(sa.Table, User.__table__)
_memberships = cast(sa.Table, RoomMembership.__table__)
_rooms = cast(sa.Table, Room.__table__)
# Every stored (sender, client_id) pair of the batch, through the unique index on the pair, and
# possibly a few more pairs (one sender's id with another's client_id) that the caller leaves out.
_STORED_KEYS = sa.select(_messages.c.id, _messages.c.sender_id, _messages.c.client_id).where(
    _messages.c.sender_id.in_(sa.bindparam("senders", expanding=True)),
    _messages.c.client_id.in_(sa.bindparam("client_ids", expanding=True)),
)
# Senders and recipients as the transaction sees them, which of them are members of the batch's
# rooms, and the last rev (a scalar subquery riding along on every row).
_USER_STATE = (
    _users.c.id,
    _users.c.username,
    _users.c.is_admin,
    _users.c.banned,
    _users.c.ban_reason,
    _users.c.muted_until,
)
_LAST_REV = sa.select(sa.func.max(_messages.c.rev)).scalar_subquery()
_ADMISSION = (
    sa.select(*_USER_STATE, _LAST_REV, _memberships.c.room_id)
    .outerjoin(
        _memberships,
        sa.and_(
            _memberships.c.user_id == _users.c.id,
            _memberships.c.room_id.in_(sa.bindparam("room_ids", expanding=True)),
        ),
    )
    .where(_users.c.id.in_(sa.bindparam("user_ids", expanding=True)))
)
# A batch of one room message (most batches when messages are few): the same admission and the id stored earlier under its client_id, if any, in one
# statement without IN lists, which cost a rendering of the SQL per execution.
_ADMISSION_OF_ONE = (
    sa.select(
        *_USER_STATE,
        _LAST_REV,
        _memberships.c.room_id,
        sa.select(_messages.c.id)
        .where(_messages.c.sender_id == sa.bindparam("sender_id"), _messages.c.client_id == sa.bindparam("client_id"))
        .scalar_subquery(),
    )
    .outerjoin(
        _memberships,
        sa.and_(_memberships.c.user_id == _users.c.id, _memberships.c.room_id == sa.bindparam("room_id")),
    )
    .where(_users.c.id == sa.bindparam("sender_id"))
)
_INSERT_MESSAGES = sa.insert(_messages).returning(_messages.c.id, sort_by_parameter_order=True)
_INSERT_MENTIONS = sa.insert(cast(sa.Table, Mention.__table__))
_ROOM_NAMES = sa.select(_rooms.c.id, _rooms.c.name).where(_rooms.c.id.in_(sa.bindparam("ids", expanding=True)))


def _insert(connection: sa.Connection, batch: list[Draft]) -> list[Answer]:
    """Insert the drafts whose client_id is new and whose sender may post; one answer per draft, in order:
    (MESSAGE, duplicate), or the refusal.

    A client_id repeated within the batch, or already stored, answers with the one stored message.
    Ban, mute and membership are checked here, inside the ordered write, with one statement for
    the batch (``_admitted``), so no cache can let a post through after a change has committed.
    New rows go in with one INSERT ... RETURNING for the whole batch, and their MESSAGE payloads
    are built from the drafts and that statement's rows instead of loading ORM objects back.
    """
    admission: Admission | None = None
    if len(batch) == 1 and batch[0].room_id is not None:
        stored, admission = _admitted_alone(connection, batch[0])
    else:
        stored = _stored_by_client_id(connection, batch)
    answers: list[Answer | None] = [None] * len(batch)
    first_with_key: dict[tuple[int, str | None], int] = {}
    candidates: list[int] = []
    for index, draft in enumerate(batch):
        key = (draft.sender_id, draft.client_id)
        if draft.client_id is not None and key in stored:
            answers[index] = (stored[key], True)
        elif draft.client_id is not None and key in first_with_key:
            continue  # answered below with what its first draft gets
        else:
            candidates.append(index)
            if draft.client_id is not None:
                first_with_key[key] = index
    if admission is None:
        admission = _admitted(connection, [batch[index] for index in candidates])
    users = {user_id: state.to_dict() for user_id, state in admission.users.items()}
    room_names = _room_names(connection, batch)
    new_rows: list[tuple[int, dict]] = []
    for index in candidates:
        draft = batch[index]
        refusal = _refusal(draft, admission)
        if refusal is not None:
            answers[index] = refusal
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
                        "reply_to_id": draft.reply_to_id,
                    },
                )
            )
    if new_rows:
        first_rev = admission.last_rev + 1
        for offset, (_, row) in enumerate(new_rows):
            row["rev"] = first_rev + offset
        rows = [row for _, row in new_rows]
        ids = connection.execute(_INSERT_MESSAGES, rows if len(rows) > 1 else rows[0]).scalars().all()
        mention_rows = [
            {
                "message_id": message_id,
                "user_id": user_id,
                "position": position,
                "notified": user_id in batch[index].notified,
            }
            for (index, _), message_id in zip(new_rows, ids, strict=True)
            for position, (user_id, _name) in enumerate(batch[index].mentions)
        ]
        if mention_rows:
            connection.execute(_INSERT_MENTIONS, mention_rows)
        for (index, row), message_id in zip(new_rows, ids, strict=True):
            mentioned = [name for _, name in batch[index].mentions]
            attached = files.claim(connection, row["sender_id"], message_id, batch[index].attachment_ids)
            answers[index] = (_message_dict(message_id, row, users, room_names, mentioned, attached), False)
    for index, draft in enumerate(batch):
        if answers[index] is None:
            first = answers[first_with_key[(draft.sender_id, draft.client_id)]]
            assert first is not None
            answers[index] = first if isinstance(first, ServiceError) else (first[0], True)
    return [answer for answer in answers if answer is not None]


@dataclass
class Admission:
    """What the ordered write reads before inserting: senders and recipients as the transaction sees
    them, which senders are members of the drafts' rooms, and the last rev."""

    users: dict[int, UserState] = field(default_factory=dict)
    members: set[tuple[int, int]] = field(default_factory=set)
    last_rev: int = 0


def _admitted(connection, drafts: list[Draft]) -> Admission:
    """One statement for the whole batch (the last rev rides along as a scalar subquery)."""
    if not drafts:
        return Admission()
    user_ids = {d.sender_id for d in drafts} | {d.recipient_id for d in drafts if d.recipient_id is not None}
    room_ids = {d.room_id for d in drafts if d.room_id is not None}
    admission = Admission()
    for row in connection.execute(_ADMISSION, {"user_ids": list(user_ids), "room_ids": list(room_ids)}):
        admission.users[row[0]] = UserState(*row[:-2])
        admission.last_rev = row[-2] or 0
        if row[-1] is not None:
            admission.members.add((row[0], row[-1]))
    return admission


def _refusal(draft: Draft, admission: Admission) -> ServiceError | None:
    states, members = admission.users, admission.members
    sender = states.get(draft.sender_id)
    if sender is None:
        return ServiceError("unauthorized", "this account no longer exists")
    try:
        check_can_post(sender)
    except ServiceError as refusal:
        return refusal
    if draft.room_id is not None and (draft.sender_id, draft.room_id) not in members:
        return ServiceError("forbidden", f"join {draft.room_name or 'the room'} before posting to it")
    if draft.recipient_id is not None and draft.recipient_id not in states:
        return ServiceError("not_found", "no such user")
    return None


def next_rev(session) -> int:
    """The next value of the server-wide change counter; call it inside an ordered write transaction."""
    return (session.scalar(sa.select(sa.func.max(Message.rev))) or 0) + 1


def _message_dict(
    message_id: int,
    row: dict,
    users: dict[int, dict],
    room_names: dict[int, str],
    mentioned: list[str],
    attachments: list[dict],
) -> dict:
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
        "rev": row["rev"],
        "edited_at": None,
        "reply_to": row["reply_to_id"],
        "mentions": mentioned,
        "reactions": [],
        "attachments": attachments,
    }


def _room_names(connection, batch: list[Draft]) -> dict[int, str]:
    """The name of every room of the batch, read from the database only where a draft did not bring it."""
    room_names = {d.room_id: d.room_name for d in batch if d.room_id is not None and d.room_name is not None}
    missing_rooms = {d.room_id for d in batch if d.room_id} - room_names.keys()
    if missing_rooms:
        room_names.update(connection.execute(_ROOM_NAMES, {"ids": list(missing_rooms)}).tuples().all())
    return room_names


def _stored_by_client_id(connection: sa.Connection, batch: list[Draft]) -> dict[tuple[int, str | None], dict]:
    keys = {(d.sender_id, d.client_id) for d in batch if d.client_id is not None}
    if not keys:
        return {}
    # Ids first, without the joined loads: almost every batch repeats no client_id.
    rows = connection.execute(
        _STORED_KEYS,
        {"senders": list({sender for sender, _ in keys}), "client_ids": list({cid for _, cid in keys})},
    )
    return _stored_messages(
        connection, [message_id for message_id, sender_id, client_id in rows if (sender_id, client_id) in keys]
    )


def _admitted_alone(connection: sa.Connection, draft: Draft) -> tuple[dict[tuple[int, str | None], dict], Admission]:
    """``_stored_by_client_id`` and ``_admitted`` of a batch of one room message, in one statement."""
    admission = Admission()
    params = {"sender_id": draft.sender_id, "room_id": draft.room_id, "client_id": draft.client_id}
    row = connection.execute(_ADMISSION_OF_ONE, params).first()
    if row is None:
        return {}, admission  # the sender is gone: refused
    admission.users[row[0]] = UserState(*row[:6])
    admission.last_rev = row[6] or 0
    if row[7] is not None:
        admission.members.add((row[0], row[7]))
    stored_id = row[8] if draft.client_id is not None else None
    return _stored_messages(connection, [stored_id] if stored_id is not None else []), admission


def _stored_messages(connection: sa.Connection, ids: list[int]) -> dict[tuple[int, str | None], dict]:
    if not ids:
        return {}
    # A resend: its stored MESSAGE, through an ORM session on the write's own connection and transaction.
    with sa.orm.Session(bind=connection) as session:
        messages = session.scalars(sa.select(Message).where(Message.id.in_(ids)))
        return {(m.sender_id, m.client_id): m.to_dict() for m in messages}


writer = MessageWriter()


Poster = User | UserState


def check_can_post(user: Poster) -> None:
    """Banned and muted users may not post; the one place those refusals are worded."""
    if user.banned:
        raise ServiceError("banned", "this account is banned")
    if user.muted_until is not None and user.is_muted():
        raise ServiceError(
            "muted",
            f"you are muted until {user.muted_until.isoformat(timespec='seconds')}Z",
        )


def repeated(user: Poster, client_id) -> Posted | None:
    """The message an earlier send with this client_id stored, if any.

    A retry (after a lost ack, often from a new socket) gets the stored message back
    whatever its new payload, so it is looked up before the payload is judged.
    """
    cid = validation.client_id(client_id)
    if cid is None:
        return None
    # The id alone first: the full row, with its joined sender, recipient and room, only for a repeat.
    stored_id = db.session.scalar(sa.select(Message.id).where(Message.sender_id == user.id, Message.client_id == cid))
    stored = db.session.get(Message, stored_id) if stored_id is not None else None
    return Posted(stored.to_dict(), True) if stored is not None else None


def find_mentions(body: str) -> list[tuple[int, str]]:
    """(user id, canonical username) of every @mention in ``body``, in order of first appearance.

    ``@name`` counts at the start or after a character that is not a letter, digit, ``_``, ``.``
    or ``-``; ``name`` is the longest existing username the characters after ``@`` begin with that
    is not followed by a letter or digit, so ``@eli.`` and ``@eli,`` mention ``eli``.
    """
    spans: list[tuple[str, str]] = []  # (run of name characters after @, the character after it)
    for index, char in enumerate(body):
        if char != "@":
            continue
        if index > 0 and (body[index - 1].isalnum() or body[index - 1] in "_.-"):
            continue
        end = index + 1
        while end < len(body) and body[end] in NAME_CHARS and end - index <= MAX_USERNAME:
            end += 1
        spans.append((body[index + 1 : end], body[end] if end < len(body) else ""))
    candidates: dict[str, None] = {}
    for run, _after in spans:
        for length in range(MIN_USERNAME, min(len(run), MAX_USERNAME) + 1):
            candidates[run[:length].lower()] = None
    if not candidates:
        return []
    rows = db.session.execute(
        sa.select(User.username_key, User.id, User.username).where(User.username_key.in_(list(candidates)))
    )
    known = {key: (user_id, name) for key, user_id, name in rows}
    found: dict[int, str] = {}
    for run, after in spans:
        for length in range(min(len(run), MAX_USERNAME), MIN_USERNAME - 1, -1):
            following = run[length] if length < len(run) else after
            if following.isalnum():
                continue
            match = known.get(run[:length].lower())
            if match is not None:
                found.setdefault(match[0], match[1])
                break
    return list(found.items())


def _visible(session, user_id: int, message_id) -> Message:
    """A live message the user may see: of a room they are a member of now, or a DM they sent or got.

    Anything else, unknown or deleted included, is ``not_found``: no existence leak.
    """
    message_id = validation.integer(message_id, "id", minimum=1)
    message = session.get(Message, message_id)
    if message is None or message.deleted:
        raise ServiceError("not_found", f"no message {message_id}")
    if message.room_id is not None:
        if session.get(RoomMembership, (user_id, message.room_id)) is None:
            raise ServiceError("not_found", f"no message {message_id}")
    elif user_id not in (message.sender_id, message.recipient_id):
        raise ServiceError("not_found", f"no message {message_id}")
    return message


def _reply_target(reply_to, *, room_id: int | None = None, pair: str | None = None) -> int | None:
    """``reply_to`` names a live message of the same room or the same DM pair."""
    if reply_to is None:
        return None
    target_id = validation.integer(reply_to, "reply_to", minimum=1)
    target = db.session.get(Message, target_id)
    if (
        target is None
        or target.deleted
        or (room_id is not None and target.room_id != room_id)
        or (pair is not None and target.dm_pair != pair)
    ):
        raise ServiceError("not_found", f"no message {target_id} in this conversation to reply to")
    return target_id


def _room_members(room_id: int, user_ids: set[int]) -> set[int]:
    if not user_ids:
        return set()
    stmt = sa.select(RoomMembership.user_id).where(
        RoomMembership.room_id == room_id, RoomMembership.user_id.in_(user_ids)
    )
    return set(db.session.scalars(stmt))


def _publish_mentions(message: dict, member_ids: set[int]) -> None:
    """`mention` to the mentioned members of the message's room (read before the commit), never to its sender."""
    recipients = member_ids - {message["sender"]["id"]}
    if message["room"] is not None and recipients:
        notifier().to_users(recipients, "mention", {"message": message})


def _body(body, attachment_ids: list[int]) -> str:
    """The body rules of `message` and `dm`, except that a message with attachments may have none."""
    if attachment_ids and (body is None or (isinstance(body, str) and not body.strip())):
        return ""
    return validation.body(body)


def _or_repeated(user: Poster, client_id, post):
    """Run ``post``; a refused send whose client_id an earlier send stored gets that message back.

    A retry (after a lost ack, often from a new socket) gets the stored message whatever its new
    payload; a retry with a payload still valid is answered by the writer's own client_id check, so
    only a refusal costs this lookup.
    """
    try:
        return post()
    except ServiceError:
        try:
            earlier = repeated(user, client_id)
        except ServiceError:
            earlier = None
        if earlier is None:
            raise
        return earlier


def post_room_message(
    user: Poster, room_name, body, client_id=None, *, reply_to=None, attachments=None, actor_sid=None
) -> Posted:
    return _or_repeated(
        user,
        client_id,
        lambda: _post_room_message(user, room_name, body, client_id, reply_to, attachments, actor_sid),
    )


def _post_room_message(user: Poster, room_name, body, client_id, reply_to, attachments, actor_sid) -> Posted:
    attachment_ids = files.attachment_ids(attachments)
    text = _body(body, attachment_ids)
    cid = validation.client_id(client_id)
    cache = hot_cache()
    room = cache.room(validation.room_name(room_name))
    if room is None:
        raise ServiceError("not_found", f"no room named {room_name}")
    check_can_post(user)
    if not cache.is_member(user.id, room.id):
        raise ServiceError("forbidden", f"join {room.name} before posting to it")
    reply_to_id = _reply_target(reply_to, room_id=room.id)
    files.check_attachable(user.id, attachment_ids)
    mentions = find_mentions(text)
    mentioned_members = _room_members(room.id, {user_id for user_id, _ in mentions} - {user.id})
    posted = writer.write(
        Draft(
            sender_id=user.id,
            room_id=room.id,
            body=text,
            client_id=cid,
            sender=user.to_dict(),
            room_name=room.name,
            reply_to_id=reply_to_id,
            mentions=mentions,
            notified=mentioned_members,
            attachment_ids=attachment_ids,
        )
    )
    if not posted.duplicate:
        notifier().to_room(room.name, "message", posted.message, skip_sid=actor_sid)
        _publish_mentions(posted.message, mentioned_members)
    return posted


def post_direct_message(
    user: Poster,
    recipient: Poster,
    body,
    client_id=None,
    *,
    to_sid=None,
    reply_to=None,
    attachments=None,
    actor_sid=None,
) -> Posted:
    """A DM to every socket of ``recipient``, or to exactly the socket ``to_sid``; the sender's other sockets get it too."""
    return _or_repeated(
        user,
        client_id,
        lambda: _post_direct_message(user, recipient, body, client_id, to_sid, reply_to, attachments, actor_sid),
    )


def _post_direct_message(
    user: Poster, recipient: Poster, body, client_id, to_sid, reply_to, attachments, actor_sid
) -> Posted:
    attachment_ids = files.attachment_ids(attachments)
    text = _body(body, attachment_ids)
    cid = validation.client_id(client_id)
    check_can_post(user)
    reply_to_id = _reply_target(reply_to, pair=dm_pair(user.id, recipient.id))
    files.check_attachable(user.id, attachment_ids)
    sender_id, recipient_id = user.id, recipient.id
    posted = writer.write(
        Draft(
            sender_id=user.id,
            recipient_id=recipient.id,
            body=text,
            client_id=cid,
            sender=user.to_dict(),
            recipient=recipient.to_dict(),
            reply_to_id=reply_to_id,
            mentions=find_mentions(text),
            attachment_ids=attachment_ids,
        )
    )
    if not posted.duplicate:
        notify = notifier()
        if to_sid is not None:
            if to_sid != actor_sid:
                notify.to_sid(to_sid, "dm", posted.message)
            notify.to_users([sender_id], "dm", posted.message, skip_sid=[sid for sid in (actor_sid, to_sid) if sid])
        else:
            notify.to_users({recipient_id, sender_id}, "dm", posted.message, skip_sid=actor_sid)
    return posted


def _audience(message: dict) -> tuple[str | None, set[int]]:
    """Who got the original: the room's sockets, or both DM parties' sockets."""
    if message["room"] is not None:
        return message["room"], set()
    return None, {message["sender"]["id"], message["recipient"]["id"]}


def publish_update(message: dict, *, actor_sid=None, deleted: bool = False) -> None:
    """`message_updated` (and `message_deleted` for a deletion) to everyone who got the original."""
    notify = notifier()
    room, people = _audience(message)
    events = [("message_updated", message)]
    if deleted:
        events.append(("message_deleted", {"id": message["id"], "room": message["room"]}))
    for event, data in events:
        if room is not None:
            notify.to_room(room, event, data, skip_sid=actor_sid)
        else:
            notify.to_users(people, event, data, skip_sid=actor_sid)


def edit_message(user: User, message_id, body, *, actor_sid=None) -> dict:
    """The sender replaces the body; mentions are computed again and newly mentioned members told."""
    text = validation.body(body)
    check_can_post(user)
    mentions = find_mentions(text)
    with write_transaction(ordered=True) as session:
        message = _visible(session, user.id, message_id)
        if message.sender_id != user.id:
            raise ServiceError("forbidden", "only its sender may edit a message")
        if message.body == text:
            return message.to_dict()
        ever = {mention.user_id: mention for mention in message.mentioned}
        # `mention` goes out once per message and user: only to members never told of this one before.
        untold = {user_id for user_id, _ in mentions if not (user_id in ever and ever[user_id].notified)}
        untold.discard(user.id)
        mentioned_members = _room_members(message.room_id, untold) if message.room_id is not None else set()
        message.body = text
        message.edited_at = utcnow()
        message.rev = next_rev(session)
        for mention in ever.values():
            mention.current = False
        for position, (user_id, _name) in enumerate(mentions):
            row = ever.get(user_id)
            if row is None:
                row = Mention(user_id=user_id, position=position, notified=False, user=session.get(User, user_id))
                message.mentioned.append(row)
            row.position, row.current = position, True
            row.notified = row.notified or user_id in mentioned_members
        message.mentioned.sort(key=lambda mention: mention.position)
        session.flush()
        payload = message.to_dict()
    publish_update(payload, actor_sid=actor_sid)
    _publish_mentions(payload, mentioned_members)
    return payload


def soft_delete(session, message: Message) -> bool:
    """Delete inside the caller's ordered transaction; False when it was already deleted."""
    if message.deleted:
        return False
    message.deleted = True
    message.rev = next_rev(session)
    message.reactions.clear()
    message.mentioned.clear()
    session.flush()
    return True


def delete_message(user: User, message_id, *, actor_sid=None) -> dict:
    """The sender deletes their message: it keeps its place with an empty body."""
    with write_transaction(ordered=True) as session:
        message = _visible(session, user.id, message_id)
        if message.sender_id != user.id:
            raise ServiceError("forbidden", "only its sender may delete a message")
        soft_delete(session, message)
        payload = message.to_dict()
    publish_update(payload, actor_sid=actor_sid, deleted=True)
    return payload


def emoji_text(value) -> str:
    if not isinstance(value, str) or not value:
        raise ServiceError("invalid", "emoji must be a non-empty string")
    if len(value) > MAX_EMOJI:
        raise ServiceError("too_large", f"emoji is limited to {MAX_EMOJI} characters")
    if any(char.isspace() for char in value) or not validation.storable(value):
        raise ServiceError("invalid", "emoji must have no whitespace")
    return value


def react(user: User, message_id, emoji, active, *, actor_sid=None) -> dict:
    """Add or take back the user's emoji; a reaction that is already so changes nothing and tells no one."""
    emoji = emoji_text(emoji)
    active = validation.boolean(active, "active")
    check_can_post(user)
    with write_transaction(ordered=True) as session:
        message = _visible(session, user.id, message_id)
        mine = [r for r in message.reactions if r.user_id == user.id and r.emoji == emoji]
        if bool(mine) == active:
            return message.to_dict()
        if active:
            distinct = {r.emoji for r in message.reactions}
            if emoji not in distinct and len(distinct) >= MAX_EMOJI_PER_MESSAGE:
                raise ServiceError("conflict", f"a message holds at most {MAX_EMOJI_PER_MESSAGE} different emoji")
            reactor = session.get(User, user.id)
            message.reactions.append(Reaction(user_id=user.id, user=reactor, emoji=emoji, created_at=utcnow()))
        else:
            message.reactions.remove(mine[0])
        message.rev = next_rev(session)
        session.flush()
        payload = message.to_dict()
    publish_update(payload, actor_sid=actor_sid)
    return payload


def _page(stmt, before: int | None, limit: int) -> tuple[list[dict], bool]:
    """A keyset page read backwards from ``before``, returned oldest first."""
    if before is not None:
        stmt = stmt.where(Message.id < before)
    rows = list(db.session.scalars(stmt.order_by(Message.id.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    return [m.to_dict() for m in reversed(rows[:limit])], has_more


def room_history(room_name, before=None, limit=None, *, user_id: int | None = None) -> tuple[list[dict], bool]:
    """A page of a room; a private room's only for its members (``user_id`` given by every caller but admins)."""
    room = get_room(room_name)
    if user_id is not None:
        check_may_read(user_id, room)
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


def _may_see(user_id: int):
    member_rooms = sa.select(RoomMembership.room_id).where(RoomMembership.user_id == user_id)
    return sa.or_(
        Message.room_id.in_(member_rooms),
        Message.recipient_id == user_id,
        sa.and_(Message.sender_id == user_id, Message.recipient_id.is_not(None)),
    )


def sync(user: User, after) -> tuple[list[dict], bool]:
    """Every room message of the user's rooms and every DM of the user with id > after."""
    after = validation.integer(after, "after", minimum=0)
    stmt = sa.select(Message).where(Message.id > after, _may_see(user.id)).order_by(Message.id).limit(SYNC_LIMIT + 1)
    rows = list(db.session.scalars(stmt))
    return [m.to_dict() for m in rows[:SYNC_LIMIT]], len(rows) > SYNC_LIMIT


def sync_changes(user: User, after_rev) -> tuple[list[dict], bool, int]:
    """Every message the user may see whose latest change has rev > after_rev, in rev order."""
    after_rev = validation.integer(after_rev, "after_rev", minimum=0)
    stmt = (
        sa.select(Message).where(Message.rev > after_rev, _may_see(user.id)).order_by(Message.rev).limit(SYNC_LIMIT + 1)
    )
    rows = list(db.session.scalars(stmt))[: SYNC_LIMIT + 1]
    page = rows[:SYNC_LIMIT]
    return [m.to_dict() for m in page], len(rows) > SYNC_LIMIT, page[-1].rev if page else after_rev


def _last_dm_ids_statement() -> sa.Select:
    user_id: sa.BindParameter[int] = sa.bindparam("user_id", type_=sa.Integer)
    mine = sa.or_(Message.sender_id == user_id, Message.recipient_id == user_id)
    return sa.select(sa.func.max(Message.id)).where(Message.dm_pair.is_not(None), mine).group_by(Message.dm_pair)


# The newest message of each DM conversation of ``:user_id``; read at every connect, so built once
# (a statement object keeps its cache key, which SQLAlchemy otherwise computes per call).
LAST_DM_IDS = _last_dm_ids_statement()


def direct_conversations(user_id: int) -> list[dict]:
    """Everyone the user has exchanged a DM with, most recent conversation first, with unread counts."""
    last_ids = list(db.session.scalars(LAST_DM_IDS, {"user_id": user_id}))
    if not last_ids:
        return []
    marker = sa.orm.aliased(DirectReadMarker)
    unread_stmt = (
        sa.select(Message.sender_id, sa.func.count(Message.id))
        .outerjoin(marker, sa.and_(marker.user_id == user_id, marker.other_id == Message.sender_id))
        .where(
            Message.recipient_id == user_id,
            Message.sender_id != user_id,
            Message.deleted.is_(False),
            Message.id > sa.func.coalesce(marker.last_read_id, 0),
        )
        .group_by(Message.sender_id)
    )
    unread = dict(db.session.execute(unread_stmt).tuples().all())
    lasts = db.session.scalars(sa.select(Message).where(Message.id.in_(last_ids)).order_by(Message.id.desc()))
    conversations = []
    for message in lasts:
        other = message.recipient if message.sender_id == user_id else message.sender
        assert other is not None
        conversations.append({"user": other.to_dict(), "unread": unread.get(other.id, 0), "last": message.to_dict()})
    return conversations


def mark_dm_read(user_id: int, other: Poster, message_id) -> int:
    """Move the read marker of the DM conversation with ``other`` forward (never back) to one of its messages."""
    message_id = validation.integer(message_id, "id", minimum=1)
    return read_markers().mark(MarkRequest(user_id, message_id, other_id=other.id, other_name=other.username))


def mention_counts(user_id: int) -> dict[str, int]:
    """Unread messages that mention the user, per member room; the user's own messages are never unread."""
    return unread_counts(user_id, mentions_only=True)


def count_since(seconds: int = 60) -> int:
    since = utcnow() - timedelta(seconds=seconds)
    return db.session.scalar(sa.select(sa.func.count(Message.id)).where(Message.created_at >= since)) or 0
