"""Full-text search over the messages a user may see, with each database's own engine.

SQLite: an FTS5 table (``unicode61 remove_diacritics 2``) kept in step with ``messages`` by
triggers. PostgreSQL: a GIN index on ``to_tsvector('simple', body)``. Either way a message matches
when its body contains every word of the query as a whole word, in any order, ignoring case.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import sqlalchemy as sa

from app.database import is_postgres
from app.errors import ServiceError
from app.extensions import db
from app.models import SEARCH_FTS_TABLE, Message, RoomMembership, User, dm_pair
from app.services import validation
from app.services.rooms import check_may_read, get_room
from app.services.users import get_user

MAX_QUERY = 200
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Words are runs of letters and digits, as both engines' tokenizers see them.
WORD_RE = re.compile(r"[^\W_]+")


def query_words(q: Any) -> list[str]:
    """The distinct words of a query, lowercased; ``invalid`` unless 1-200 characters with a word."""
    if not isinstance(q, str):
        raise ServiceError("invalid", "q must be a string")
    if not 1 <= len(q) <= MAX_QUERY:
        raise ServiceError("invalid", f"q must be 1-{MAX_QUERY} characters")
    if not validation.storable(q):
        raise ServiceError("invalid", "q must be text without NUL characters or lone surrogates")
    words = WORD_RE.findall(unicodedata.normalize("NFC", q).lower())
    if not words:
        raise ServiceError("invalid", "q must contain at least one word (letters or digits)")
    return list(dict.fromkeys(words))


def _matching(words: list[str]) -> sa.ColumnElement[bool]:
    if is_postgres():
        # The expression must be the indexed one, with the configuration as a literal.
        vector = sa.func.to_tsvector(sa.literal_column("'simple'"), Message.body)
        query = sa.func.plainto_tsquery(sa.literal_column("'simple'"), " ".join(words))
        return vector.bool_op("@@")(query)
    # Each word quoted: FTS5 reads the words as terms, never as operators; juxtaposition is AND.
    expression = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    fts = sa.table(SEARCH_FTS_TABLE, sa.column("rowid"))
    matches = sa.select(fts.c.rowid).where(
        sa.text(f"{SEARCH_FTS_TABLE} MATCH :fts_query").bindparams(fts_query=expression)
    )
    return Message.id.in_(matches)


def search_messages(user: User, q: Any, room: Any = None, with_user: Any = None, limit: Any = None) -> list[dict]:
    """Messages the user may see whose body holds every word of ``q``, newest first.

    Without ``room`` or ``with_user``: the rooms the user is a member of now and their DMs.
    ``room``: that room only (a private one only to its members: ``forbidden``).
    ``with_user``: the DMs between the user and that user.
    """
    words = query_words(q)
    limit = validation.limit(limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    if room is not None and with_user is not None:
        raise ServiceError("invalid", "give room or user, not both")
    if room is not None:
        target = get_room(room)
        check_may_read(user.id, target)
        scope = Message.room_id == target.id
    elif with_user is not None:
        if not isinstance(with_user, str):
            raise ServiceError("invalid", "user must be a username")
        other = get_user(with_user)
        scope = Message.dm_pair == dm_pair(user.id, other.id)
    else:
        member_rooms = sa.select(RoomMembership.room_id).where(RoomMembership.user_id == user.id)
        scope = sa.or_(
            Message.room_id.in_(member_rooms),
            Message.recipient_id == user.id,
            sa.and_(Message.sender_id == user.id, Message.recipient_id.is_not(None)),
        )
    stmt = (
        sa.select(Message)
        .where(scope, Message.deleted.is_(False), _matching(words))
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return [message.to_dict() for message in db.session.scalars(stmt)]
