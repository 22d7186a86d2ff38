"""Per-worker copies of what the message path reads: users' ban and mute state, rooms by name, memberships.

A `message`, `dm`, `typing` or `read` event reads these instead of the database, so a steady-state
`message` runs no query before its ordered write. They stay exact this way:

* Every action that changes one of them calls ``changed()`` after its commit: the entries go at
  once in this worker, and the same invalidation is published on the Socket.IO message queue
  (the Redis channel every worker reads, in order with the emits and disconnects the action
  publishes next), which every other worker applies on receipt.
* A reader that missed stores what it read only if no invalidation arrived since its database
  snapshot began (a generation counter), so a read that raced a change never caches the old state.
* Entries expire after ``HOT_CACHE_TTL_SECONDS``; a worker whose subscription to the queue was
  interrupted (and may have missed invalidations) drops every entry when it subscribes again.
* Posting never relies on the cache alone: the writer checks ban, mute and membership again
  inside the ordered write transaction (``messages._admitted``), so a message whose write begins
  after a ban, mute or leave has committed is refused whatever any cache holds.

Only positive memberships are kept: "not a member" is always read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from app.extensions import db
from app.metrics import HOT_CACHE_INVALIDATIONS, HOT_CACHE_LOOKUPS
from app.models import Room, RoomMembership, User, utcnow

EXTENSION_KEY = "switchboard.hot_cache"
# Past this many entries of one kind, that kind is dropped whole (a bound, not an eviction policy).
MAX_ENTRIES = 200_000

# Bumped by every invalidation in this process; a read stores its result only if the counter did
# not move since the snapshot it read from began (recorded on the session when it begins).
_generation = 0
_SESSION_GENERATION = "hot_cache_generation"


@dataclass(frozen=True, slots=True)
class UserState:
    """What the message path needs of a user; the same attributes as ``User`` for the checks."""

    id: int
    username: str
    is_admin: bool
    banned: bool
    ban_reason: str | None
    muted_until: datetime | None

    def is_muted(self, now: datetime | None = None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or utcnow())

    def to_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


@dataclass(frozen=True, slots=True)
class RoomState:
    id: int
    name: str
    private: bool
    topic: str


USER_COLUMNS = (User.id, User.username, User.is_admin, User.banned, User.ban_reason, User.muted_until)
ROOM_COLUMNS = (Room.id, Room.name, Room.private, Room.topic)
# Built once: a statement object reused keeps its cache key, which SQLAlchemy otherwise works out
# again for every execution.
USER_BY_ID = sa.select(*USER_COLUMNS).where(User.id == sa.bindparam("user_id"))
USER_BY_NAME = sa.select(*USER_COLUMNS).where(User.username_key == sa.bindparam("key"))
ROOM_BY_NAME = sa.select(*ROOM_COLUMNS).where(Room.name == sa.bindparam("name"))
MEMBERSHIP = sa.select(RoomMembership.room_id).where(
    RoomMembership.user_id == sa.bindparam("user_id"), RoomMembership.room_id == sa.bindparam("room_id")
)


def _began(session: Session, _transaction, _connection) -> None:
    session.info[_SESSION_GENERATION] = _generation


sa.event.listen(Session, "after_begin", _began)


def _snapshot_generation() -> int:
    """The generation the next read's snapshot is at least as fresh as."""
    session = db.session()
    if session.in_transaction():
        return session.info.get(_SESSION_GENERATION, -1)
    return _generation


def transaction_generation() -> int:
    """The generation at which the session's open transaction began (-1 outside one)."""
    session = db.session()
    return session.info.get(_SESSION_GENERATION, -1) if session.in_transaction() else -1


class HotCache:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self.users: dict[int, tuple[float, UserState]] = {}
        self.user_ids: dict[str, int] = {}  # username_key -> id (usernames never change)
        self.rooms: dict[str, tuple[float, RoomState]] = {}
        self.members: dict[tuple[int, int], float] = {}
        self.hits = HOT_CACHE_LOOKUPS.labels("hit")
        self.misses = HOT_CACHE_LOOKUPS.labels("miss")

    # -- reads --------------------------------------------------------------------------------

    def user(self, user_id: int) -> UserState | None:
        entry = self.users.get(user_id)
        if entry is not None and entry[0] > self.clock():
            self.hits.inc()
            return entry[1]
        self.misses.inc()
        return self.read_user(user_id)

    def read_user(self, user_id: int) -> UserState | None:
        """The user as the database has them in the session's snapshot, kept for later lookups."""
        generation = _snapshot_generation()
        row = db.session.execute(USER_BY_ID, {"user_id": user_id}).first()
        if row is None:
            return None
        state = UserState(*row)
        self._store(self.users, user_id, state, generation)
        return state

    def user_by_name(self, username: str) -> UserState | None:
        key = username.lower()
        user_id = self.user_ids.get(key)
        if user_id is not None:
            return self.user(user_id)
        self.misses.inc()
        generation = _snapshot_generation()
        row = db.session.execute(USER_BY_NAME, {"key": key}).first()
        if row is None:
            return None
        state = UserState(*row)
        if len(self.user_ids) >= MAX_ENTRIES:
            self.user_ids.clear()
        self.user_ids[key] = state.id
        self._store(self.users, state.id, state, generation)
        return state

    def room(self, name: str) -> RoomState | None:
        entry = self.rooms.get(name)
        if entry is not None and entry[0] > self.clock():
            self.hits.inc()
            return entry[1]
        self.misses.inc()
        generation = _snapshot_generation()
        row = db.session.execute(ROOM_BY_NAME, {"name": name}).first()
        if row is None:
            return None
        state = RoomState(*row)
        self._store(self.rooms, name, state, generation)
        return state

    def is_member(self, user_id: int, room_id: int) -> bool:
        key = (user_id, room_id)
        expires = self.members.get(key)
        if expires is not None and expires > self.clock():
            self.hits.inc()
            return True
        self.misses.inc()
        generation = _snapshot_generation()
        found = db.session.scalar(MEMBERSHIP, {"user_id": user_id, "room_id": room_id})
        if found is None:
            return False
        if generation == _generation:
            self._keep_member(key)
        return True

    def remember_rooms_of(self, user_id: int, member_rooms: Iterable) -> None:
        """Keep the rooms and memberships of ``user_id`` that a read of the session's open
        transaction found (a socket's rooms at connect: ``rooms.member_rooms``), so that the
        socket's first `message` in each reads nothing."""
        # -1 (never a generation) when the read's snapshot is gone: its age is unknown.
        if transaction_generation() != _generation:
            return
        generation = _generation
        for room in member_rooms:
            self._store(self.rooms, room.name, RoomState(room.id, room.name, room.private, room.topic), generation)
            self._keep_member((user_id, room.id))

    def remember_member(self, user_id: int, room_id: int, began: int, own_invalidations: int = 0) -> None:
        """Keep a membership that a write transaction begun at generation ``began`` (``transaction_generation``)
        made or found, so the user's first `message` after a `join` reads nothing; only if no invalidation
        but the caller's own ``own_invalidations`` (its ``changed()`` after the commit) came since it began."""
        if began >= 0 and _generation == began + own_invalidations:
            self._keep_member((user_id, room_id))

    def _keep_member(self, key: tuple[int, int]) -> None:
        if len(self.members) >= MAX_ENTRIES:
            self.members.clear()
        self.members[key] = self.clock() + self.ttl

    def _store(self, table: dict, key, value, generation: int) -> None:
        if generation != _generation:
            return  # an invalidation arrived after this read's snapshot began: it may be stale
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[key] = (self.clock() + self.ttl, value)

    # -- invalidation -------------------------------------------------------------------------

    def invalidate(
        self,
        users: Iterable[int] = (),
        rooms: Iterable[str] = (),
        memberships: Iterable[tuple[int, int]] = (),
    ) -> None:
        global _generation
        _generation += 1
        for user_id in users:
            self.users.pop(user_id, None)
        for name in rooms:
            self.rooms.pop(name, None)
        for user_id, room_id in memberships:
            self.members.pop((user_id, room_id), None)

    def clear(self) -> None:
        global _generation
        _generation += 1
        self.users.clear()
        self.user_ids.clear()
        self.rooms.clear()
        self.members.clear()

    # -- messages on the queue ----------------------------------------------------------------

    def apply(self, message: dict, source: str = "queue") -> None:
        """An invalidation, as ``changed()`` publishes it."""
        HOT_CACHE_INVALIDATIONS.labels(source).inc()
        self.invalidate(
            users=[int(user_id) for user_id in message.get("users", ())],
            rooms=[str(name) for name in message.get("rooms", ())],
            memberships=[(int(user_id), int(room_id)) for user_id, room_id in message.get("memberships", ())],
        )


def hot_cache() -> HotCache:
    cache = current_app.extensions.get(EXTENSION_KEY)
    if cache is None:
        cache = current_app.extensions[EXTENSION_KEY] = HotCache(current_app.config["HOT_CACHE_TTL_SECONDS"])
    return cache


# Set by the socket layer when a message queue connects the workers (app/sockets/__init__.py):
# publishes one invalidation to every other worker.
Publisher = Callable[[dict], None]


def changed(
    *,
    users: Iterable[int] = (),
    rooms: Iterable[str] = (),
    memberships: Iterable[tuple[int, int]] = (),
) -> None:
    """After a commit: drop these entries here at once and on every other worker."""
    message = {
        "users": sorted(set(users)),
        "rooms": sorted(set(rooms)),
        "memberships": sorted({(user_id, room_id) for user_id, room_id in memberships}),
    }
    hot_cache().apply(message, "local")
    publish: Publisher | None = current_app.extensions.get(EXTENSION_KEY + ".publish")
    if publish is not None:
        publish(message)
