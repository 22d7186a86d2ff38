"""`read` markers written in batches: one transaction for every marker that arrives within a short window.

Browsers send `read` a moment after live messages arrive, so a message to a room of a hundred
members is followed by about a hundred `read` events. Each used to be its own write transaction
(and, on SQLite, its own fsync). Here the first `read` to find no batch open waits
``READ_MARKER_FLUSH_SECONDS`` and then writes every marker queued meanwhile in one transaction,
as does whoever queues the ``READ_MARKER_BATCH``-th. Each request is still checked on its own
(membership, the message in that room or DM), inside that transaction; markers of one
(user, room) or (user, DM partner) merge to the highest valid id and never move back; every
request is answered only after the commit, with the marker as committed, so ``session.unread``
of a socket that connects after the answer counts from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import sqlalchemy as sa
from flask import current_app

from app.database import end_read_snapshot, write_connection
from app.errors import ServiceError
from app.metrics import READ_MARKER_BATCH_SIZE
from app.models import DirectReadMarker, Message, RoomMembership, dm_pair

EXTENSION_KEY = "switchboard.read_markers"


@dataclass(eq=False)
class MarkRequest:
    """One `read`: of a room (``room_id``) or of the DM conversation with ``other_id``."""

    user_id: int
    message_id: int
    room_id: int | None = None
    room_name: str = ""
    other_id: int | None = None
    other_name: str = ""
    result: int | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple[str, int, int]:
        if self.room_id is not None:
            return ("room", self.user_id, self.room_id)
        assert self.other_id is not None
        return ("dm", self.user_id, self.other_id)


class ReadMarkerWriter:
    def __init__(self, flush_seconds: float, max_batch: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.flush_seconds = flush_seconds
        self.max_batch = max(1, max_batch)
        self.sleep = sleep
        self.lock = threading.Lock()
        self.pending: list[MarkRequest] = []
        self.leader_waiting = False
        self.transactions = 0

    def mark(self, request: MarkRequest) -> int:
        """Queue the marker and return it as committed (or raise its refusal)."""
        end_read_snapshot()
        with self.lock:
            self.pending.append(request)
            full = len(self.pending) >= self.max_batch
            lead = not full and not self.leader_waiting
            if lead:
                self.leader_waiting = True
        if full:
            self._flush(leader=False)
        elif lead:
            try:
                self.sleep(self.flush_seconds)
            finally:
                # Even if this greenlet is killed while it waits: the requests it leads are answered.
                self._flush(leader=True)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _flush(self, *, leader: bool) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            if leader:
                self.leader_waiting = False
        if batch:
            self._commit(batch)

    def _commit(self, batch: list[MarkRequest]) -> None:
        try:
            self.transactions += 1
            with write_connection() as connection:
                answers = _apply(connection, batch)
            READ_MARKER_BATCH_SIZE.observe(len(batch))
        except Exception as exc:
            if len(batch) > 1:
                for request in batch:  # whatever failed, it fails only the request that caused it
                    self._commit([request])
            else:
                _answer(batch, [exc])
            return
        except BaseException as exc:
            _answer(batch, [exc] * len(batch))
            raise
        _answer(batch, answers)


def _answer(batch: list[MarkRequest], answers: list) -> None:
    for request, answer in zip(batch, answers, strict=True):
        if isinstance(answer, BaseException):
            request.error = answer
        else:
            request.result = answer
        request.done.set()


# The batch's statements, built once: executing the same statement object again reuses its memoized
# cache key and compiled form. They run on the write's own Connection (``write_connection``), past the ORM.
_messages = cast(sa.Table, Message.__table__)
_memberships = cast(sa.Table, RoomMembership.__table__)
_dm_markers = cast(sa.Table, DirectReadMarker.__table__)
_FOUND = sa.select(_messages.c.id, _messages.c.room_id, _messages.c.dm_pair).where(
    _messages.c.id.in_(sa.bindparam("ids", expanding=True))
)
# The markers of the batch's (user, room) and (user, DM partner) keys, and perhaps a few other keys
# of the same users, which the caller leaves out: two IN lists search the primary key, where SQLite
# answers "(user_id, room_id) IN (VALUES ...)" by scanning the whole table.
_ROOM_MARKERS = sa.select(_memberships.c.user_id, _memberships.c.room_id, _memberships.c.last_read_id).where(
    _memberships.c.user_id.in_(sa.bindparam("users", expanding=True)),
    _memberships.c.room_id.in_(sa.bindparam("targets", expanding=True)),
)
_DM_MARKERS = sa.select(_dm_markers.c.user_id, _dm_markers.c.other_id, _dm_markers.c.last_read_id).where(
    _dm_markers.c.user_id.in_(sa.bindparam("users", expanding=True)),
    _dm_markers.c.other_id.in_(sa.bindparam("targets", expanding=True)),
)


def _markers_now(connection, statement: sa.Select, keys: set[tuple]) -> dict[tuple, int]:
    """The stored marker of every key (user, room or DM partner) that has one."""
    if not keys:
        return {}
    params = {"users": list({user_id for user_id, _ in keys}), "targets": list({target for _, target in keys})}
    return {
        (user_id, target): last
        for user_id, target, last in connection.execute(statement, params)
        if (user_id, target) in keys
    }


def _forward(table: sa.Table, target: sa.Column) -> sa.Update:
    return (
        sa.update(table)
        .where(
            table.c.user_id == sa.bindparam("u"), target == sa.bindparam("t"), table.c.last_read_id < sa.bindparam("v")
        )
        .values(last_read_id=sa.bindparam("v"))
    )


# "last_read_id < v" keeps a marker from moving back if another process moved it meanwhile
# (PostgreSQL evaluates an UPDATE's WHERE again on the newest version of a row it waited for).
_FORWARD_ROOM_MARKERS = _forward(_memberships, _memberships.c.room_id)
_FORWARD_DM_MARKERS = _forward(_dm_markers, _dm_markers.c.other_id)


def _forward_all(table: sa.Table, target: sa.Column) -> sa.TextClause:
    """PostgreSQL: one UPDATE for every marker of the batch, from three arrays, where an executemany
    sends (and psycopg adapts) one UPDATE per marker. Each key comes once in a batch."""
    return sa.text(
        f"UPDATE {table.name} SET last_read_id = batch.v"
        " FROM unnest(CAST(:u AS integer[]), CAST(:t AS integer[]), CAST(:v AS integer[])) AS batch(u, t, v)"
        f" WHERE {table.name}.user_id = batch.u AND {table.name}.{target.name} = batch.t"
        f" AND {table.name}.last_read_id < batch.v"
    )


_FORWARD_ROOM_MARKERS_AT_ONCE = _forward_all(_memberships, _memberships.c.room_id)
_FORWARD_DM_MARKERS_AT_ONCE = _forward_all(_dm_markers, _dm_markers.c.other_id)
_INSERT_DM_MARKERS = sa.insert(_dm_markers)


def _apply(connection: sa.Connection, batch: list[MarkRequest]) -> list[int | BaseException]:
    """Check every request, move each marker to the highest valid id of its key; answers in batch order."""
    found = {
        message_id: (room_id, pair)
        for message_id, room_id, pair in connection.execute(
            _FOUND, {"ids": list({request.message_id for request in batch})}
        )
    }
    room_keys = {(r.user_id, r.room_id) for r in batch if r.room_id is not None}
    dm_keys = {(r.user_id, r.other_id) for r in batch if r.other_id is not None}
    rooms_now = _markers_now(connection, _ROOM_MARKERS, room_keys)
    dms_now = _markers_now(connection, _DM_MARKERS, dm_keys)

    answers: list[int | BaseException | None] = []
    wanted: dict[tuple[str, int, int], int] = {}
    for request in batch:
        refusal = _refusal(request, found, rooms_now)
        answers.append(refusal)
        if refusal is None:
            wanted[request.key] = max(wanted.get(request.key, 0), request.message_id)

    markers: dict[tuple[str, int, int], int] = {}
    room_updates, dm_updates, dm_inserts = [], [], []
    for (kind, user_id, target), message_id in wanted.items():
        if kind == "room":
            before = rooms_now[(user_id, target)]
            if message_id > before:
                room_updates.append({"u": user_id, "t": target, "v": message_id})
        else:
            before = dms_now.get((user_id, target), -1)
            if before < 0:
                dm_inserts.append({"user_id": user_id, "other_id": target, "last_read_id": message_id})
            elif message_id > before:
                dm_updates.append({"u": user_id, "t": target, "v": message_id})
        markers[(kind, user_id, target)] = max(before, message_id)
    at_once = connection.dialect.name == "postgresql"
    for updates, one_by_one, all_at_once in (
        (room_updates, _FORWARD_ROOM_MARKERS, _FORWARD_ROOM_MARKERS_AT_ONCE),
        (dm_updates, _FORWARD_DM_MARKERS, _FORWARD_DM_MARKERS_AT_ONCE),
    ):
        if updates and at_once:
            columns = {name: [update[name] for update in updates] for name in ("u", "t", "v")}
            connection.execute(all_at_once, columns)
        elif updates:
            connection.execute(one_by_one, updates)
    if dm_inserts:
        connection.execute(_INSERT_DM_MARKERS, dm_inserts)
    return [
        answer if answer is not None else markers[request.key] for request, answer in zip(batch, answers, strict=True)
    ]


def _refusal(request: MarkRequest, found: dict, rooms_now: dict) -> ServiceError | None:
    message = found.get(request.message_id)
    if request.room_id is not None:
        if (request.user_id, request.room_id) not in rooms_now:
            return ServiceError("forbidden", "only members keep a read marker")
        # Only a real message of this room may move the marker, so no id from the
        # future can mark messages read before they are written.
        if message is None or message[0] != request.room_id:
            return ServiceError("not_found", f"no message {request.message_id} in {request.room_name}")
        return None
    assert request.other_id is not None
    if message is None or message[1] != dm_pair(request.user_id, request.other_id):
        return ServiceError("not_found", f"no message {request.message_id} with {request.other_name}")
    return None


def read_markers() -> ReadMarkerWriter:
    writer = current_app.extensions.get(EXTENSION_KEY)
    if writer is None:
        writer = current_app.extensions[EXTENSION_KEY] = ReadMarkerWriter(
            current_app.config["READ_MARKER_FLUSH_SECONDS"], current_app.config["READ_MARKER_BATCH"]
        )
    return writer
