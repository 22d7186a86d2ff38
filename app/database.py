"""Engine tuning and the one serialised write path every service uses.

SQLite allows one writer at a time; under gevent a writer that waits on SQLite's
busy lock blocks the whole hub, so writes inside one process queue on a
gevent-aware lock instead, and each write transaction starts with BEGIN IMMEDIATE
so a second process waits on the busy timeout rather than failing mid-transaction.
On PostgreSQL, message inserts also take a transaction-level advisory lock, so
message ids commit in the order they were allocated and "every message with
id > N" never skips one that commits late.
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
            cursor.execute("PRAGMA synchronous = NORMAL")
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
        session.connection(execution_options={"sqlite_immediate": True})
        if ordered and is_postgres(session):
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MESSAGE_LOCK_KEY})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def write_lock() -> threading.RLock:
    return _write_lock
