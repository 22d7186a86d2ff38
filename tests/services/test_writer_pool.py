"""A handler waiting for the group commit holds no database connection, so the committer always gets one."""

from __future__ import annotations

import threading
import time

import pytest

from app.database import write_lock, write_transaction
from app.extensions import db
from app.services import messages, rooms
from app.services.hot_cache import hot_cache

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def app_settings():
    # One connection: a waiter that kept the one its read opened would starve the committer.
    return {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 3}}


@both_databases
def test_a_sender_waiting_for_the_writer_gives_back_the_connection_its_reads_opened(app, make_user):
    ann = make_user("ann")
    with app.app_context():
        rooms.join_room(ann.id, "general")
    answers: dict = {}

    def send() -> None:
        with app.app_context():
            try:
                sender = hot_cache().user(ann.id)  # a read: it opens a snapshot on the only connection
                answers["posted"] = messages.post_room_message(sender, "general", "hello", "cid-1")
            except Exception as error:  # noqa: BLE001 - reported below
                answers["error"] = error
            finally:
                db.session.remove()

    with app.app_context():
        hot_cache().users.clear()
        with write_lock():
            sender = threading.Thread(target=send)
            sender.start()
            deadline = time.monotonic() + 10
            while not messages.writer.pending and time.monotonic() < deadline:
                time.sleep(0.01)
            assert messages.writer.pending, "the sender never reached the writer"
            # Another write commits meanwhile, as the group committer would: it needs a connection.
            with write_transaction():
                pass
        sender.join(10)
        db.session.remove()
    assert "error" not in answers, answers
    assert answers["posted"].message["body"] == "hello"
