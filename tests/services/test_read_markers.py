"""`read` markers arriving together are written in one transaction, each checked on its own, each answered after the commit."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from app.errors import ServiceError
from app.extensions import db
from app.models import DirectReadMarker, RoomMembership
from app.services import messages, rooms, users
from app.services.read_markers import read_markers

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
WAIT_SECONDS = 30
PEOPLE = 12


@pytest.fixture
def app_settings():
    # A window wide enough that threads started together land in few batches on a busy machine.
    return {"READ_MARKER_FLUSH_SECONDS": 0.2, "READ_MARKER_BATCH": 500}


def marker_writes(app, action) -> list[str]:
    """Run ``action``; the statements that wrote a marker meanwhile (one per transaction and kind)."""
    with app.app_context():
        engine = db.engine
    written: list[str] = []
    lock = threading.Lock()

    def record(_conn, _cursor, statement, _parameters, _context, _executemany):
        if statement.startswith(("UPDATE room_memberships", "UPDATE dm_read_markers", "INSERT INTO dm_read_markers")):
            with lock:
                written.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return written


def stored_marker(app, user_id: int, *, room_id: int | None = None, other_id: int | None = None) -> int | None:
    """The marker as a new connection sees it: what a socket connecting now would count unread from."""
    with app.app_context(), db.engine.connect() as connection:
        if room_id is not None:
            return connection.scalar(
                sa.select(RoomMembership.last_read_id).where(
                    RoomMembership.user_id == user_id, RoomMembership.room_id == room_id
                )
            )
        return connection.scalar(
            sa.select(DirectReadMarker.last_read_id).where(
                DirectReadMarker.user_id == user_id, DirectReadMarker.other_id == other_id
            )
        )


@both_databases
def test_concurrent_reads_share_few_transactions_and_each_is_answered_after_its_commit(app):
    with app.app_context():
        people = [users.register_user(f"reader{n}", "password1") for n in range(PEOPLE)]
        ids = [p.id for p in people]
        outsider = users.register_user("outsider", "password1").id
        side, _ = rooms.join_room(ids[0], "side")
        side_id = side.id
        general_posts = [messages.post_room_message(people[n % 3], "general", f"m{n}").message["id"] for n in range(6)]
        side_post = messages.post_room_message(people[0], "side", "elsewhere").message["id"]
        dm_posts = [messages.post_direct_message(people[1], people[2], f"dm{n}").message["id"] for n in range(3)]
        general_id = rooms.get_room("general").id
        names = [p.username for p in people]
        read_markers().transactions = 0

    # (label, user, room or DM partner, message id); some twice, some out of order, some refused.
    requests = [(f"g{n}-{m}", ids[n], "general", general_posts[m]) for n in range(PEOPLE) for m in (5, 2, 4)]
    requests += [
        ("side-of-general", ids[3], "general", side_post),  # not a message of general
        ("non-member", outsider, "side", side_post),
        ("side", ids[0], "side", side_post),
        ("dm-early", ids[2], ("user", names[1]), dm_posts[0]),
        ("dm-late", ids[2], ("user", names[1]), dm_posts[2]),
        ("dm-sender", ids[1], ("user", names[2]), dm_posts[1]),
        ("dm-stranger", ids[4], ("user", names[1]), dm_posts[0]),
        ("no-message", ids[5], "general", 10**6),
    ]
    answers: dict[str, object] = {}
    seen_after: dict[str, int | None] = {}
    start = threading.Barrier(len(requests))

    def read(label, user_id, where, message_id):
        with app.app_context():
            try:
                start.wait(WAIT_SECONDS)
                if isinstance(where, tuple):
                    other = users.get_user(where[1])
                    db.session.rollback()
                    answers[label] = messages.mark_dm_read(user_id, other, message_id)
                    seen_after[label] = stored_marker(app, user_id, other_id=other.id)
                else:
                    answers[label] = rooms.mark_read(user_id, where, message_id)
                    room_id = general_id if where == "general" else side_id
                    seen_after[label] = stored_marker(app, user_id, room_id=room_id)
            except ServiceError as error:
                answers[label] = error.code
            finally:
                db.session.remove()

    def run_all():
        threads = [threading.Thread(target=read, args=request, daemon=True) for request in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_SECONDS)
            assert not thread.is_alive(), "a read was never answered"

    written = marker_writes(app, run_all)

    for n in range(PEOPLE):
        for m in (5, 2, 4):
            assert answers[f"g{n}-{m}"] == general_posts[5]  # the marker as committed: the highest of the three
    assert answers["side-of-general"] == "not_found"
    assert answers["non-member"] == "forbidden"
    assert answers["side"] == side_post
    assert answers["dm-early"] == answers["dm-late"] == dm_posts[2]
    assert answers["dm-sender"] == dm_posts[1]
    assert answers["dm-stranger"] == "not_found"
    assert answers["no-message"] == "not_found"
    # Answered only after the commit: a new connection already saw at least the answered marker.
    for label, seen in seen_after.items():
        assert seen is not None and seen >= answers[label], label
    for n in range(PEOPLE):
        assert stored_marker(app, ids[n], room_id=general_id) == general_posts[5]
    assert stored_marker(app, ids[3], room_id=general_id) == general_posts[5]  # the refused one changed nothing
    assert stored_marker(app, outsider, room_id=side_id) is None
    with app.app_context():
        transactions = read_markers().transactions
    # 44 requests (up to 1 + 44 transactions one by one); a slow thread start may open a second batch.
    assert 1 <= transactions <= 4, transactions
    assert len(written) <= 3 * transactions


def test_a_read_marker_never_moves_back(app, ctx):
    ann = users.register_user("ann", "password1")
    first = messages.post_room_message(ann, "general", "one").message["id"]
    second = messages.post_room_message(ann, "general", "two").message["id"]
    assert rooms.mark_read(ann.id, "general", second) == second
    assert rooms.mark_read(ann.id, "general", first) == second


@pytest.mark.parametrize("statement", ["_ROOM_MARKERS", "_DM_MARKERS"])
def test_sqlite_finds_a_batch_of_markers_through_the_primary_key(app, ctx, statement):
    """SQLite answers "(user_id, room_id) IN (VALUES ...)" by scanning the whole table; the batch's
    lookup of several keys must search the primary key instead."""
    from app.services import read_markers as module

    connection = db.session.connection()
    executed: list[tuple[str, tuple]] = []

    def record(_conn, _cursor, sql, parameters, _context, _executemany):
        executed.append((sql, parameters))

    sa.event.listen(connection, "before_cursor_execute", record)
    try:
        connection.execute(getattr(module, statement), {"users": [1, 2, 3], "targets": [4, 5]}).all()
    finally:
        sa.event.remove(connection, "before_cursor_execute", record)
    (sql, parameters), *_ = executed
    plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()
    details = " ".join(row[-1] for row in plan)
    assert "SEARCH" in details and "SCAN" not in details, details
