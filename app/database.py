"""Engine tuning and the one serialised write path every service uses.

Three rules keep "every message with id > N" (``sync``) exact and free of "database is locked":

* Inside one process every write transaction holds one lock (gevent-aware under the
  gunicorn worker, a thread lock elsewhere), so writers queue in Python instead of in
  SQLite's busy handler, which would block the whole gevent hub while it waits.
* On SQLite each write transaction first ends the session's read snapshot and then starts
  with BEGIN IMMEDIATE, so it holds the database write lock from its first statement: a
  writer in another process waits on the busy timeout instead of failing, and no
  transaction ever tries to upgrade a stale read snapshot (SQLITE_BUSY_SNAPSHOT, which
  the busy timeout does not cover). SQLite hands out message ids inside that lock, so ids
  commit in the order they were allocated.
* On PostgreSQL message ids come from a sequence, whose values are handed out before their
  transactions commit and can become visible out of order. Message transactions therefore
  take one transaction-level advisory lock before inserting and keep it until they commit,
  in every process: a message id becomes visible only after every smaller one has.

File databases use WAL with synchronous=FULL: an acknowledged message survives a killed
server and a power cut alike.

A write that fails because the database's disk is full or the database cannot be written
(a read-only file or file system, a read-only PostgreSQL) marks the storage unwritable in
``STORAGE`` until a write succeeds again; ``/healthz`` then proves a write (``probe_write``)
before it answers 200. Such a failure rolls back like any other: SQLite and PostgreSQL keep
the database whole, and nothing unacknowledged was stored.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.extensions import db

MESSAGE_LOCK_KEY = 0x5B0A4D  # advisory lock id for message inserts
SQLITE_BUSY_TIMEOUT_MS = 10_000

# Created at import time, after wsgi.py has monkey-patched threading under gevent.
_write_lock = threading.RLock()


# What a client is told (as the message of an ``internal`` error) when its write could not be stored.
STORAGE_PROBLEMS = {
    "full": "the server cannot store anything right now: its database disk is full",
    "read_only": "the server cannot store anything right now: its database is read-only",
}
# PostgreSQL's SQLSTATEs: disk_full, read_only_sql_transaction.
STORAGE_SQLSTATES = {"53100": "full", "25006": "read_only"}


def storage_problem(error: BaseException | None) -> str | None:
    """``full`` or ``read_only`` when ``error`` (a driver's, or SQLAlchemy's wrapping it) says the
    database cannot be written for want of space or of write access; None for anything else."""
    original = getattr(error, "orig", None) or error
    if original is None:
        return None
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in STORAGE_SQLSTATES:
        return STORAGE_SQLSTATES[sqlstate]
    text = str(original).lower()
    if "database or disk is full" in text or "no space left on device" in text:
        return "full"
    if "readonly database" in text or "read-only file system" in text:
        return "read_only"
    return None


@dataclass
class StorageHealth:
    """Whether this process's last write to the database worked: None before its first write."""

    writable: bool | None = None
    problem: str | None = None

    def wrote(self) -> None:
        self.writable, self.problem = True, None

    def failed(self, problem: str) -> None:
        self.writable, self.problem = False, problem


STORAGE = StorageHealth()


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "handle_error")
    def _reopen_when_read_only(context):
        # A connection that opened a read-only file stays read-only after the file is made writable
        # again: drop it, so the next write opens the file afresh.
        if storage_problem(context.original_exception) == "read_only":
            context.is_disconnect = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN, so writes can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            # NORMAL would survive a killed process but may lose the last commits on a power cut,
            # and a message is acknowledged as stored once its commit returns.
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_postgres(session: Session | None = None) -> bool:
    return (session or db.session).get_bind().dialect.name == "postgresql"


@contextmanager
def write_transaction(*, ordered: bool = False) -> Iterator[Session]:
    """Run one write transaction, serialised with every other write of this process.

    ``ordered`` is for message inserts: ids must commit in allocation order
    across every process that writes to the database.
    """
    with _write_lock:
        session = db.session()
        if session.in_transaction():
            # End any read snapshot first: a write that upgrades an old snapshot fails on SQLite.
            session.commit()
        try:
            session.connection(execution_options={"sqlite_immediate": True})
            if ordered and is_postgres(session):
                session.execute(_ADVISORY_LOCK, {"key": MESSAGE_LOCK_KEY})
            yield session
            session.commit()
        except BaseException as error:
            session.rollback()
            problem = storage_problem(error)
            if problem is not None:
                STORAGE.failed(problem)
            raise
        STORAGE.wrote()


_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


@contextmanager
def write_connection(*, ordered: bool = False) -> Iterator[sa.Connection]:
    """``write_transaction`` on a Core Connection of its own, for the batch writers that run only
    Core statements (messages, read markers): no ORM Session to begin, flush, expire and close.

    The caller's session is not touched: callers end its read snapshot first (``end_read_snapshot``),
    so it holds no connection while this one is checked out.
    """
    with _write_lock:
        try:
            with db.engine.connect() as connection:
                connection.execution_options(sqlite_immediate=True)
                with connection.begin():
                    if ordered and connection.dialect.name == "postgresql":
                        connection.execute(_ADVISORY_LOCK, {"key": MESSAGE_LOCK_KEY})
                    yield connection
        except BaseException as error:
            problem = storage_problem(error)
            if problem is not None:
                STORAGE.failed(problem)
            raise
        STORAGE.wrote()


def end_read_snapshot() -> None:
    """Give back the connection an earlier read of this greenlet holds, before it waits for a write.

    Hundreds of handlers wait at once for the group commit; each holding the connection its reads
    opened would empty the pool that the committing greenlet needs, and every one of them would
    wait out the pool's timeout. Only a snapshot with nothing to write is ended.
    """
    if not db.session.registry.has():
        return  # no session yet in this context (a `read` that only consulted caches): nothing to give back
    session = db.session()
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def probe_write() -> None:
    """Commit a write that changes nothing (SQLite rewrites its header's user_version; PostgreSQL
    commits a transaction id), proving that the database takes writes; raises if it does not."""
    with write_transaction() as session:
        if is_postgres(session):
            session.execute(sa.text("SELECT txid_current()"))
        else:
            version = int(session.execute(sa.text("PRAGMA user_version")).scalar_one())
            session.execute(sa.text(f"PRAGMA user_version = {version}"))


def write_lock() -> threading.RLock:
    return _write_lock
