"""Message ids become visible in id order, so ``sync`` from any id it returned never skips one.

Each test plays "another process" with a raw database connection that inserts a message and
keeps its transaction open while the app's MessageWriter writes from a thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from app.database import MESSAGE_LOCK_KEY
from app.extensions import db
from app.models import Room, User
from app.services import messages, users

WAIT_SECONDS = 20


@pytest.fixture
def ann(app):
    with app.app_context():
        user = users.register_user("ann", "password1")
        general = db.session.scalar(sa.select(Room).where(Room.name == "general"))
        return user.id, general.id


class WriterThread(threading.Thread):
    """``writer.write`` of one draft in its own thread and app context."""

    def __init__(self, app, writer: messages.MessageWriter, draft: messages.Draft) -> None:
        super().__init__(daemon=True)
        self.app, self.writer, self.draft = app, writer, draft
        self.posted: messages.Posted | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.app.app_context():
            try:
                self.posted = self.writer.write(self.draft)
            except BaseException as error:  # handed to the test thread to assert on
                self.error = error
            finally:
                db.session.remove()

    def result(self) -> dict:
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "the writer never finished"
        assert self.error is None, self.error
        return self.posted.message


def sync_ids(user_id: int, after: int) -> list[int]:
    db.session.rollback()  # a fresh snapshot, as a new sync request would have
    page, has_more = messages.sync(db.session.get(User, user_id), after)
    assert not has_more
    return [m["id"] for m in page]


def stored_ids() -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(sa.text("SELECT id FROM messages ORDER BY id")))


# -- PostgreSQL -------------------------------------------------------------------------


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def raw_insert_holding_lock(connection: psycopg.Connection, sender_id: int, room_id: int) -> int:
    """What another server process does: take the message lock, insert, not commit yet.

    Its rev is taken far ahead, so that the negative control below (a writer that skips the
    lock) is about ids alone and does not block on the unique rev the two would otherwise share.
    """
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (MESSAGE_LOCK_KEY,))
    return connection.execute(
        "INSERT INTO messages (room_id, sender_id, body, created_at, deleted, rev)"
        " VALUES (%s, %s, 'from another process', now(), false, (SELECT COALESCE(MAX(rev), 0) + 1000 FROM messages))"
        " RETURNING id",
        (room_id, sender_id),
    ).fetchone()[0]


def wait_for_lock_waiter(database_url: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(libpq(database_url), autocommit=True) as observer:
        while time.monotonic() < deadline:
            waiting = observer.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted",
                (MESSAGE_LOCK_KEY,),
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the writer never waited for the message lock")


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_writer_waits_for_an_earlier_id_to_commit_so_sync_never_skips(app, ctx, ann, database_url):
    user_id, room_id = ann
    with psycopg.connect(libpq(database_url)) as other_process:
        earlier_id = raw_insert_holding_lock(other_process, user_id, room_id)
        writer = WriterThread(
            app, messages.MessageWriter(), messages.Draft(sender_id=user_id, room_id=room_id, body="b", client_id=None)
        )
        writer.start()
        wait_for_lock_waiter(database_url)
        # While the earlier id is uncommitted, no later id is visible: a client cannot move past it.
        assert sync_ids(user_id, 0) == []
        assert writer.is_alive()
        other_process.commit()
    later_id = writer.result()["id"]
    assert later_id > earlier_id
    assert sync_ids(user_id, 0) == [earlier_id, later_id]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_without_the_lock_a_late_commit_is_skipped_by_sync(app, ctx, ann, database_url):
    """The negative control: the same interleaving without the advisory lock loses a message."""
    user_id, room_id = ann
    with psycopg.connect(libpq(database_url)) as other_process:
        earlier_id = raw_insert_holding_lock(other_process, user_id, room_id)
        unordered = messages.MessageWriter(ordered=False)
        later = WriterThread(
            app, unordered, messages.Draft(sender_id=user_id, room_id=room_id, body="b", client_id=None)
        )
        later.start()
        later_id = later.result()["id"]
        assert later_id > earlier_id
        seen = sync_ids(user_id, 0)
        assert seen == [later_id]  # the client's cursor moves to later_id...
        other_process.commit()
    assert earlier_id in stored_ids()
    assert earlier_id not in sync_ids(user_id, max(seen))  # ...and the earlier message is never delivered


# -- SQLite ---------------------------------------------------------------------------------


def sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_writer_waits_for_another_process_and_ids_stay_in_commit_order(app, ctx, ann, database_url):
    user_id, room_id = ann
    other_process = sqlite3.connect(sqlite_path(database_url), isolation_level=None, timeout=WAIT_SECONDS)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        earlier_id = other_process.execute(
            "INSERT INTO messages (room_id, sender_id, body, created_at, deleted, rev)"
            " VALUES (?, ?, 'from another process', datetime('now'), 0, (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages)) RETURNING id",
            (room_id, user_id),
        ).fetchone()[0]
        writer = WriterThread(
            app, messages.MessageWriter(), messages.Draft(sender_id=user_id, room_id=room_id, body="b", client_id=None)
        )
        writer.start()
        writer.join(0.5)
        # Still waiting on SQLite's write lock (the busy timeout), not failed with "database is locked".
        assert writer.is_alive() and writer.error is None
        assert sync_ids(user_id, 0) == []
        other_process.execute("COMMIT")
    finally:
        other_process.close()
    later_id = writer.result()["id"]
    assert later_id > earlier_id
    assert sync_ids(user_id, 0) == [earlier_id, later_id]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_a_write_after_a_stale_read_is_locked_out_but_write_transaction_starts_fresh(
    app, ctx, ann, database_url
):
    """The negative control: a plain transaction that read before another process committed
    cannot write ("database is locked", whatever the busy timeout). write_transaction ends the
    session's read snapshot before it begins, so the same interleaving through the app succeeds."""
    user_id, room_id = ann
    path = sqlite_path(database_url)

    def insert_from_another_process() -> None:
        other = sqlite3.connect(path, isolation_level=None, timeout=WAIT_SECONDS)
        other.execute(
            "INSERT INTO messages (room_id, sender_id, body, created_at, deleted, rev)"
            " VALUES (?, ?, 'other', datetime('now'), 0, (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages))",
            (room_id, user_id),
        )
        other.close()

    stale = sqlite3.connect(path, isolation_level=None, timeout=WAIT_SECONDS)
    try:
        stale.execute("BEGIN")
        stale.execute("SELECT count(*) FROM messages").fetchone()
        insert_from_another_process()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            stale.execute(
                "INSERT INTO messages (room_id, sender_id, body, created_at, deleted, rev)"
                " VALUES (?, ?, 'stale', datetime('now'), 0, (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages))",
                (room_id, user_id),
            )
    finally:
        stale.close()

    user = db.session.get(User, user_id)
    db.session.execute(sa.text("SELECT count(*) FROM messages")).scalar()  # the app session reads first too
    insert_from_another_process()
    posted = messages.post_room_message(user, "general", "through the app", "app-1")
    assert posted.message["id"] == max(stored_ids())
    assert len(stored_ids()) == 3
