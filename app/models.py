"""Database models: users, rooms, memberships, messages and the admin audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db

if TYPE_CHECKING:
    # Flask-SQLAlchemy builds db.Model at run time from this declarative base.
    from app.extensions import Base as Model
else:
    Model = db.Model


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def isoformat(moment: datetime) -> str:
    """Times are stored naive in UTC and sent as ISO 8601 with a Z."""
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class User(Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(32))
    # Usernames are unique case-insensitively; the lowered form carries the constraint.
    username_key: Mapped[str] = mapped_column(sa.String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    banned: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    ban_reason: Mapped[str | None] = mapped_column(sa.String(500))
    muted_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Raised by signing out and by a ban: every session and token carries the value it was issued
    # under (through users.credential_stamp), so raising it ends all of them at once.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    memberships: Mapped[list[RoomMembership]] = relationship(back_populates="user", cascade="all, delete-orphan")

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return not self.banned

    def get_id(self) -> str:
        return str(self.id)

    def set_password(self, password: str) -> None:
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def is_muted(self, now: datetime | None = None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or utcnow())

    def to_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


class Room(Model):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    topic: Mapped[str] = mapped_column(sa.String(250), default="", server_default="")
    # Private rooms are seen, read and joined by their members only; members invite others.
    private: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    memberships: Mapped[list[RoomMembership]] = relationship(back_populates="room", cascade="all, delete-orphan")


class RoomMembership(Model):
    __tablename__ = "room_memberships"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    room_id: Mapped[int] = mapped_column(sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True, index=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Highest message id the user has read in this room; drives unread counts.
    last_read_id: Mapped[int] = mapped_column(default=0, server_default="0")

    user: Mapped[User] = relationship(back_populates="memberships")
    room: Mapped[Room] = relationship(back_populates="memberships")


class Message(Model):
    """A room message (room_id set) or a direct message (recipient_id set)."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_client_id"),
        sa.Index("ix_messages_room_id_id", "room_id", "id"),
        sa.Index("ix_messages_recipient_id_id", "recipient_id", "id"),
        sa.Index("ix_messages_sender_id_id", "sender_id", "id"),
        sa.Index("ix_messages_dm_pair_id", "dm_pair", "id"),
        # Never reuse an id on SQLite, even after the newest row is gone: `sync` relies on ids
        # only ever growing.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rooms.id", ondelete="CASCADE"))
    sender_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    recipient_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # "low:high" user ids of a direct conversation, so one index serves both directions.
    dm_pair: Mapped[str | None] = mapped_column(sa.String(41))
    body: Mapped[str] = mapped_column(sa.Text)
    client_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    deleted: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The server-wide change counter at this message's latest change (creation, edit, deletion,
    # reaction): `sync {"after_rev"}` reads every change after a rev through this index.
    rev: Mapped[int] = mapped_column(unique=True)
    edited_at: Mapped[datetime | None]
    reply_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id", ondelete="SET NULL"))

    sender: Mapped[User] = relationship(foreign_keys=[sender_id], lazy="joined", innerjoin=True)
    recipient: Mapped[User | None] = relationship(foreign_keys=[recipient_id], lazy="joined")
    room: Mapped[Room | None] = relationship(lazy="joined")
    reactions: Mapped[list[Reaction]] = relationship(
        lazy="selectin", order_by="Reaction.id", cascade="all, delete-orphan", passive_deletes=True
    )
    mentioned: Mapped[list[Mention]] = relationship(
        lazy="selectin", order_by="Mention.position", cascade="all, delete-orphan", passive_deletes=True
    )
    attachments: Mapped[list[Attachment]] = relationship(
        lazy="selectin", order_by="Attachment.id", passive_deletes=True
    )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "room": self.room.name if self.room is not None else None,
            "sender": self.sender.to_dict(),
            "recipient": self.recipient.to_dict() if self.recipient is not None else None,
            "body": "" if self.deleted else self.body,
            "client_id": self.client_id,
            "created_at": isoformat(self.created_at),
            "deleted": self.deleted,
            "rev": self.rev,
            "edited_at": isoformat(self.edited_at) if self.edited_at is not None else None,
            "reply_to": self.reply_to_id,
            "mentions": []
            if self.deleted
            else [mention.user.username for mention in self.mentioned if mention.current],
            "reactions": [] if self.deleted else reaction_summary(self.reactions),
            "attachments": [] if self.deleted else [attachment.to_dict() for attachment in self.attachments],
        }


class Reaction(Model):
    """One user's emoji on one message; the row's id orders emoji by first use."""

    __tablename__ = "message_reactions"
    __table_args__ = (sa.UniqueConstraint("message_id", "user_id", "emoji", name="uq_message_reactions_one_each"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    emoji: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Mention(Model):
    """A user named with @ in a message; read by `mentions` unread counts per room.

    An edit that drops a name keeps its row with ``current`` false, and ``notified`` remembers
    that a member got the `mention` event: a later edit that names them anew tells no one twice.
    """

    __tablename__ = "message_mentions"
    __table_args__ = (sa.Index("ix_message_mentions_user_id_message_id", "user_id", "message_id"),)

    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    current: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    notified: Mapped[bool] = mapped_column(default=False, server_default=sa.true())

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class DirectReadMarker(Model):
    """How far a user has read their direct conversation with another user."""

    __tablename__ = "dm_read_markers"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    last_read_id: Mapped[int] = mapped_column(default=0, server_default="0")


def reaction_summary(reactions: list[Reaction]) -> list[dict]:
    """REACTIONS of a message: one entry per emoji, in order of each emoji's first use."""
    by_emoji: dict[str, list[str]] = {}
    for reaction in reactions:
        by_emoji.setdefault(reaction.emoji, []).append(reaction.user.username)
    return [{"emoji": emoji, "count": len(names), "users": names} for emoji, names in by_emoji.items()]


class AuditEntry(Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(32))
    target: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    admin: Mapped[User] = relationship(lazy="joined")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "admin": self.admin.to_dict(),
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "created_at": isoformat(self.created_at),
        }


def dm_pair(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"{low}:{high}"


class Attachment(Model):
    """An uploaded file: its metadata here, its bytes (and its thumbnail's) in the FileStore by sha256.

    ``message_id`` is null until a message claims the upload; unclaimed uploads older than a
    day are removed by ``flask files prune``.
    """

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    uploader_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    thumbnail_sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    thumbnail_type: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    @property
    def is_image(self) -> bool:
        return self.width is not None

    def to_dict(self) -> dict:
        return attachment_dict(
            self.id, self.name, self.content_type, self.size, self.width, self.height, self.thumbnail_sha256 is not None
        )


def url_safe_name(name: str) -> str:
    """The file name as the last segment of its URL: no path separators, never empty."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip() or "file"
    return quote(cleaned, safe="")


def attachment_dict(
    attachment_id: int, name: str, content_type: str, size: int, width, height, has_thumbnail: bool
) -> dict:
    """The ATTACHMENT payload; the file name in the URLs is cosmetic, the id alone finds the file."""
    safe_name = url_safe_name(name)
    return {
        "id": attachment_id,
        "name": name,
        "type": content_type,
        "size": size,
        "url": f"/files/{attachment_id}/{safe_name}",
        "width": width,
        "height": height,
        "thumbnail_url": f"/files/{attachment_id}/thumbnail/{safe_name}" if has_thumbnail else None,
    }


# Full-text search over message bodies, with each database's own engine. These objects are not in
# the metadata (autogenerate could not express them), so they are created with the messages table
# here, for create_all(), and by the migration that introduced them, for real databases;
# ``include_in_schema_comparison`` keeps `flask db check` from seeing them as drift.
SEARCH_FTS_TABLE = "messages_fts"
SEARCH_PG_INDEX = "ix_messages_body_fts"
SQLITE_SEARCH_DDL = (
    # External content: the index stores no copy of the bodies, the triggers keep it in step.
    f"CREATE VIRTUAL TABLE {SEARCH_FTS_TABLE} USING fts5(body, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    f"INSERT INTO {SEARCH_FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
    f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    f"INSERT INTO {SEARCH_FTS_TABLE}({SEARCH_FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); END",
    f"CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
    f"INSERT INTO {SEARCH_FTS_TABLE}({SEARCH_FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); "
    f"INSERT INTO {SEARCH_FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
)
POSTGRES_SEARCH_DDL = (f"CREATE INDEX {SEARCH_PG_INDEX} ON messages USING gin (to_tsvector('simple', body))",)

for _statement in SQLITE_SEARCH_DDL:
    sa.event.listen(Message.__table__, "after_create", sa.DDL(_statement).execute_if(dialect="sqlite"))
for _statement in POSTGRES_SEARCH_DDL:
    sa.event.listen(Message.__table__, "after_create", sa.DDL(_statement).execute_if(dialect="postgresql"))
sa.event.listen(
    Message.__table__,
    "before_drop",
    sa.DDL(f"DROP TABLE IF EXISTS {SEARCH_FTS_TABLE}").execute_if(dialect="sqlite"),
)


def include_in_schema_comparison(name: str | None, type_: str, _parent_names: dict) -> bool:
    """Alembic ``include_name`` hook: the search objects above are not in the metadata on purpose."""
    if type_ == "table" and name is not None and (name == SEARCH_FTS_TABLE or name.startswith(SEARCH_FTS_TABLE + "_")):
        return False
    return not (type_ == "index" and name == SEARCH_PG_INDEX)
