"""Moderation by admins: bans, mutes, kicks, deletions and announcements, each written to the audit log.

Every action and its audit entry commit in one transaction, so the log never
shows an action that did not happen nor misses one that did. Refusals raise
ServiceError before anything is written.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.database import write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import AuditEntry, Message, User, isoformat, utcnow
from app.services import messages, users, validation
from app.services.hot_cache import changed
from app.services.notifier import notifier

DEFAULT_MUTE_SECONDS = 3600
# Longer mutes are clamped: a mute of more than 30 days is a ban in all but name.
MAX_MUTE_SECONDS = 30 * 24 * 3600
MAX_REASON = 500
MAX_SID = 100
AUDIT_DEFAULT_LIMIT = 50
AUDIT_MAX_LIMIT = 200
USER_SEARCH_LIMIT = 50
MAX_QUERY = 32
ANNOUNCEMENT_TARGET = "everyone"
# Actions whose audit target is a username.
USER_ACTIONS = frozenset({"ban", "unban", "mute", "unmute"})
# A kick's details name the socket's user after this prefix (its target is the sid).
KICK_DETAILS = "socket of "


def user_summary(user: User) -> dict:
    """A USER plus what an admin needs to moderate it; a lapsed mute reads as null."""
    return {
        **user.to_dict(),
        "banned": user.banned,
        "ban_reason": user.ban_reason,
        "muted_until": isoformat(user.muted_until) if user.muted_until is not None and user.is_muted() else None,
    }


def _acting_admin(session: Session, admin_id: int) -> User:
    """The admin as the database has them inside the transaction: rights can be taken away at any time."""
    admin = session.get(User, admin_id)
    if admin is None or not admin.is_admin or admin.banned:
        raise ServiceError("forbidden", "admins only")
    return admin


def _target_user(session: Session, username) -> User:
    name = validation.username(username, "user")
    user = session.scalar(sa.select(User).where(User.username_key == name.lower()))
    if user is None:
        raise ServiceError("not_found", "no such user")
    return user


def _record(session: Session, admin: User, action: str, target: str, details: str | None = None) -> None:
    session.add(AuditEntry(admin_id=admin.id, action=action, target=target, details=details, created_at=utcnow()))


def _reason(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServiceError("invalid", "reason must be a string")
    text = value.strip()
    if len(text) > MAX_REASON:
        raise ServiceError("too_large", f"reason is limited to {MAX_REASON} characters")
    if not validation.storable(text):
        raise ServiceError("invalid", "reason must be text without NUL characters or lone surrogates")
    return text or None


def mute_seconds(value) -> int:
    """The length of a mute: 3600 s when omitted, a positive integer otherwise, clamped to 30 days."""
    if value is None:
        return DEFAULT_MUTE_SECONDS
    return min(validation.integer(value, "seconds", minimum=1), MAX_MUTE_SECONDS)


def ban_user(admin_id: int, username, reason=None) -> dict:
    """Ban an account: it can no longer sign in, get tokens or open sockets."""
    reason = _reason(reason)
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        user = _target_user(session, username)
        if user.id == admin.id:
            raise ServiceError("forbidden", "you cannot ban yourself")
        user.banned = True
        user.ban_reason = reason
        # Ends every session and token: unbanning later does not bring them back.
        user.session_version = User.session_version + 1
        _record(session, admin, "ban", user.username, reason)
        summary = user_summary(user)
    changed(users=[summary["id"]])
    # Every `/` and `/admin` socket of the user, on every worker.
    notifier().disconnect_user(summary["id"], "banned")
    return summary


def unban_user(admin_id: int, username) -> dict:
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        user = _target_user(session, username)
        user.banned = False
        user.ban_reason = None
        _record(session, admin, "unban", user.username)
        summary = user_summary(user)
    changed(users=[summary["id"]])
    return summary


def mute_user(admin_id: int, username, seconds=None) -> dict:
    """Refuse the user's messages and DMs until the mute lapses (a later mute replaces an earlier one)."""
    duration = mute_seconds(seconds)
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        user = _target_user(session, username)
        if user.id == admin.id:
            raise ServiceError("forbidden", "you cannot mute yourself")
        user.muted_until = utcnow() + timedelta(seconds=duration)
        _record(session, admin, "mute", user.username, f"{duration} seconds, until {isoformat(user.muted_until)}")
        summary = user_summary(user)
    changed(users=[summary["id"]])
    return summary


def unmute_user(admin_id: int, username) -> dict:
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        user = _target_user(session, username)
        user.muted_until = None
        _record(session, admin, "unmute", user.username)
        summary = user_summary(user)
    changed(users=[summary["id"]])
    return summary


def socket_id(value) -> str:
    if not isinstance(value, str) or not value:
        raise ServiceError("invalid", "sid must be a non-empty string")
    if len(value) > MAX_SID or not validation.storable(value):
        raise ServiceError("invalid", "sid is not a socket id")
    return value


def kick(admin_id: int, sid: str, username: str) -> None:
    """Log a kick, then disconnect the socket (on whichever worker holds it) once that has committed."""
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        _record(session, admin, "kick", sid, f"{KICK_DETAILS}{username}")
    notifier().disconnect_sid(sid, "kicked by an admin")


def delete_message(admin_id: int, message_id) -> dict:
    """Soft-delete any message, through the same rev path as a sender's deletion, and log it."""
    message_id = validation.integer(message_id, "id", minimum=1)
    with write_transaction(ordered=True) as session:
        admin = _acting_admin(session, admin_id)
        message = session.get(Message, message_id)
        if message is None:
            raise ServiceError("not_found", "no such message")
        where = f"room {message.room.name}" if message.room is not None else "a direct message"
        details = f"{where} from {message.sender.username}"
        changed = messages.soft_delete(session, message)
        _record(session, admin, "delete_message", str(message.id), details)
        payload = message.to_dict()
    if changed:
        messages.publish_update(payload, deleted=True)
    return payload


def announce(admin_id: int, body) -> dict:
    """Log an announcement and send it to every socket of `/`; returns its payload."""
    text = validation.body(body)
    with write_transaction() as session:
        admin = _acting_admin(session, admin_id)
        created_at = utcnow()
        _record(session, admin, "announce", ANNOUNCEMENT_TARGET, text)
        announcement = {"body": text, "from": admin.to_dict(), "created_at": isoformat(created_at)}
    notifier().to_everyone("announcement", announcement)
    return announcement


def audit_log(limit=None) -> list[dict]:
    """Audit entries, newest first, each with the user it concerns (``user``, or null)."""
    count = validation.limit(limit, default=AUDIT_DEFAULT_LIMIT, maximum=AUDIT_MAX_LIMIT)
    entries = list(db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(count)))
    subjects = _audit_subjects(entries)
    return [{**entry.to_dict(), "user": subjects.get(entry.id)} for entry in entries]


def _audit_subjects(entries: list[AuditEntry]) -> dict[int, dict]:
    """USER of each entry that concerns one: the banned or muted user, a kicked socket's user, a
    deleted message's sender. Two queries for the whole page; users since gone are left out."""
    names: dict[int, str] = {}
    message_ids: dict[int, int] = {}
    for entry in entries:
        if entry.action in USER_ACTIONS:
            names[entry.id] = entry.target
        elif entry.action == "kick" and entry.details and entry.details.startswith(KICK_DETAILS):
            names[entry.id] = entry.details.removeprefix(KICK_DETAILS)
        elif entry.action == "delete_message" and entry.target.isdigit():
            message_ids[entry.id] = int(entry.target)
    by_key: dict[str, User] = {}
    if names:
        keys = {name.lower() for name in names.values()}
        by_key = {
            user.username_key: user for user in db.session.scalars(sa.select(User).where(User.username_key.in_(keys)))
        }
    senders: dict[int, User] = {}
    if message_ids:
        rows = db.session.execute(
            sa.select(Message.id, User)
            .join(User, User.id == Message.sender_id)
            .where(Message.id.in_(set(message_ids.values())))
        )
        senders = {message_id: user for message_id, user in rows}
    subjects = {entry_id: by_key.get(name.lower()) for entry_id, name in names.items()}
    subjects.update({entry_id: senders.get(message_id) for entry_id, message_id in message_ids.items()})
    return {entry_id: user.to_dict() for entry_id, user in subjects.items() if user is not None}


def search_users(query) -> list[dict]:
    """Users whose name contains ``query`` (every user, by name, when it is empty), at most 50."""
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise ServiceError("invalid", "query must be a string")
    query = query.strip()
    if len(query) > MAX_QUERY:
        raise ServiceError("too_large", f"query is limited to {MAX_QUERY} characters")
    if not validation.storable(query):
        raise ServiceError("invalid", "query must be text without NUL characters or lone surrogates")
    return [user_summary(user) for user in users.search_users(query, USER_SEARCH_LIMIT)]
