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
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.extensions import db

MESSAGE_LOCK_KEY = 0x5B0A4D  # advisory lock id for message inserts
SQLITE_BUSY_TIMEOUT_MS = 10_000

# Created at import time, after wsgi.py has monkey-patched threading under gevent.
_write_lock = threading.RLock()


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

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
                session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MESSAGE_LOCK_KEY})
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def write_lock() -> threading.RLock:
    return _write_lock
