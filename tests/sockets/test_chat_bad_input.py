"""Bad input on the `/` namespace: a clear error ack, nothing stored, and the socket keeps working."""

import logging
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message, Room, RoomMembership
from app.services import messages

EVENTS = ["join", "leave", "message", "history", "dm", "dm_history", "sync", "who", "typing"]

NOT_AN_OBJECT = ["a string", ["a", "list"], 42, 4.2, True, b"\x00\xffbinary", [{"room": "general"}]]

NESTED_GARBAGE = {
    "room": {"name": ["general", {"deep": None}]},
    "body": [["hi"]],
    "client_id": {"id": 1},
    "to_sid": {"sid": "x"},
    "to_user": ["bob"],
    "user": {"username": "bob"},
    "after": {"id": 0},
    "before": [1],
    "limit": {"n": 5},
    "active": ["yes"],
}

BINARY_FIELDS = {
    "room": b"general",
    "body": b"hello",
    "client_id": b"c1",
    "to_user": b"bob",
    "user": b"bob",
    "after": b"\x00",
    "active": b"\x01",
}
VALID_FIELDS = {"room": "general", "body": "hi", "client_id": "c1", "to_user": "bob", "user": "bob", "after": 0}
FIELDS_READ = {
    "join": ["room"],
    "leave": ["room"],
    "message": ["room", "body", "client_id"],
    "history": ["room"],
    "dm": ["to_user", "body", "client_id"],
    "dm_history": ["user"],
    "sync": ["after"],
    "who": ["room"],
    "typing": ["room", "active"],
}


def binary_payloads(event: str) -> list[dict]:
    """Each field the event reads sent as binary, the others valid: a packet carries one binary attachment."""
    fields = FIELDS_READ[event]
    valid = {name: value for name, value in VALID_FIELDS.items() if name in fields}
    return [{**valid, name: BINARY_FIELDS[name]} for name in fields]


TOO_LARGE = [
    ("join", {"room": "r" * 65}),
    ("leave", {"room": "r" * 65}),
    ("history", {"room": "r" * 65}),
    ("who", {"room": "r" * 65}),
    ("typing", {"room": "r" * 65, "active": True}),
    ("message", {"room": "r" * 65, "body": "hi", "client_id": "c"}),
    ("message", {"room": "general", "body": "x" * 4001, "client_id": "c"}),
    ("message", {"room": "general", "body": "hi", "client_id": "c" * 65}),
    ("dm", {"to_user": "bob", "body": "x" * 4001, "client_id": "c"}),
    ("dm", {"to_user": "bob", "body": "hi", "client_id": "c" * 65}),
]


def snapshot(app) -> tuple:
    with app.app_context():
        return tuple(
            db.session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (Message.__table__, Room.__table__, RoomMembership.__table__)
        )


@pytest.fixture
def ann_and_bob(socket_client, make_user):
    """Ann's socket, with Bob online as a possible recipient."""
    ann, bob = make_user("ann"), make_user("bob")
    bob_socket = socket_client(bob)
    ann_socket = socket_client(ann)
    return ann_socket, bob_socket


def assert_still_works(sio, bob_socket) -> None:
    assert sio.is_connected()
    bob_socket.get_received()
    ack = sio.emit("message", {"room": "general", "body": "still here", "client_id": "after-bad-input"}, callback=True)
    assert ack["ok"] is True, ack
    assert [event["args"] for event in bob_socket.get_received() if event["name"] == "message"] == [ack["message"]]


def assert_refused(ack, codes=("invalid",), payload=None) -> None:
    assert isinstance(ack, dict), (payload, ack)
    assert ack["ok"] is False, (payload, ack)
    assert ack["error"]["code"] in codes, (payload, ack)
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"], (payload, ack)


def missing_payloads(event: str) -> list:
    """Ways of leaving out every field: an empty object, no argument at all, null."""
    return [] if event == "who" else [{}, NO_ARGUMENT, None]


NO_ARGUMENT = object()


def send(sio, event: str, payload):
    if payload is NO_ARGUMENT:
        return sio.emit(event, callback=True)
    return sio.emit(event, payload, callback=True)


@pytest.mark.parametrize("event", EVENTS)
def test_malformed_payloads_are_invalid_and_change_nothing(app, ann_and_bob, event):
    sio, bob_socket = ann_and_bob
    before = snapshot(app)
    for payload in [*NOT_AN_OBJECT, NESTED_GARBAGE, *binary_payloads(event), *missing_payloads(event)]:
        ack = send(sio, event, payload)
        assert_refused(ack, payload=payload)
        assert sio.is_connected()
    assert snapshot(app) == before
    assert_still_works(sio, bob_socket)


def test_over_long_fields_are_too_large(app, ann_and_bob):
    sio, bob_socket = ann_and_bob
    before = snapshot(app)
    for event, payload in TOO_LARGE:
        assert_refused(sio.emit(event, payload, callback=True), codes=("too_large",), payload=(event, payload))
    assert snapshot(app) == before
    assert_still_works(sio, bob_socket)


WRONG_VALUES = [
    ("history", {"room": "general", "limit": 0}),
    ("history", {"room": "general", "limit": "10"}),
    ("history", {"room": "general", "before": -5}),
    ("history", {"room": "general", "before": 1.5}),
    ("history", {"room": "general", "before": 10**20}),
    ("sync", {"after": 2**31}),
    ("dm_history", {"user": "bob", "before": 2**63}),
    ("dm_history", {"user": "bob", "limit": -1}),
    ("dm_history", {"user": "bob", "before": "1"}),
    ("sync", {"after": -1}),
    ("sync", {"after": "0"}),
    ("sync", {"after": None}),
    ("typing", {"room": "general", "active": 1}),
    ("typing", {"room": "general"}),
    ("dm", {"to_sid": 12, "body": "hi", "client_id": "c"}),
    ("dm", {"to_user": "bob", "body": "hi", "client_id": ""}),
    ("message", {"room": "General", "body": "hi", "client_id": "c"}),
    ("message", {"room": "general", "body": "nul \x00 inside", "client_id": "c"}),
    ("message", {"room": "general", "body": "lone \ud800", "client_id": "c"}),
    ("dm", {"to_user": "bob", "body": "nul \x00 inside", "client_id": "c"}),
    ("join", {"room": "UPPER"}),
    ("join", {"room": "-leading-dash"}),
]


def test_wrong_values_are_invalid(app, ann_and_bob):
    sio, bob_socket = ann_and_bob
    before = snapshot(app)
    for event, payload in WRONG_VALUES:
        assert_refused(sio.emit(event, payload, callback=True), payload=(event, payload))
    assert snapshot(app) == before
    assert_still_works(sio, bob_socket)


@pytest.mark.parametrize("event", ["no_such_event", "Message", "on_message", "_socket", "__init__", "session"])
def test_unknown_event_is_invalid(ann_and_bob, event):
    sio, bob_socket = ann_and_bob
    assert_refused(sio.emit(event, {"room": "general"}, callback=True))
    assert_still_works(sio, bob_socket)


@pytest.mark.parametrize("event", ["connect", "disconnect"])
def test_reserved_event_names_sent_by_a_client_change_nothing(socket_client, make_user, ann_and_bob, event):
    sio, bob_socket = ann_and_bob
    watcher = socket_client(make_user("cat"))
    watcher.get_received()
    assert_refused(sio.emit(event, {"token": "x"}, callback=True))
    assert [e for e in watcher.get_received() if e["name"] == "presence"] == []
    who = watcher.emit("who", {}, callback=True)
    assert [entry["user"]["username"] for entry in who["users"]] == ["ann", "bob", "cat"]
    assert_still_works(sio, bob_socket)


def test_an_exception_in_a_handler_is_answered_internal_and_logged(ann_and_bob, monkeypatch, caplog):
    sio, bob_socket = ann_and_bob

    def broken_sync(user, after):
        raise RuntimeError("the sync query blew up")

    monkeypatch.setattr(messages, "sync", broken_sync)
    with caplog.at_level(logging.ERROR, logger="switchboard.sockets"):
        ack = sio.emit("sync", {"after": 0}, callback=True)
    assert ack == {"ok": False, "error": {"code": "internal", "message": "internal server error"}}
    [record] = [r for r in caplog.records if r.name == "switchboard.sockets"]
    assert record.exc_info is not None
    assert "the sync query blew up" in caplog.text
    assert_still_works(sio, bob_socket)


@contextmanager
def failing_message_commits(app):
    """Make the database refuse the COMMIT of every transaction that inserted a message.

    The writer runs for real: its INSERT reaches the database and only the commit fails,
    so the rollback is what must leave nothing behind. Yields the INSERTs seen.
    """
    with app.app_context():
        engine = db.engine
    inserts = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGES"):
            conn.info["inserted_message"] = True
            inserts.append(statement)

    def commit(conn):
        if conn.info.pop("inserted_message", False):
            raise sa.exc.OperationalError("COMMIT", {}, Exception("database or disk is full"))

    def rollback(conn):
        conn.info.pop("inserted_message", None)

    listeners = [("before_cursor_execute", before_cursor_execute), ("commit", commit), ("rollback", rollback)]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        yield inserts
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)


def test_a_failing_write_is_answered_internal_and_stores_nothing(app, ann_and_bob, caplog):
    sio, bob_socket = ann_and_bob
    before = snapshot(app)
    bob_socket.get_received()
    with failing_message_commits(app) as inserts, caplog.at_level(logging.ERROR, logger="switchboard.sockets"):
        ack = sio.emit("message", {"room": "general", "body": "lost?", "client_id": "c"}, callback=True)
    assert ack["error"]["code"] == "internal"
    assert inserts, "the message INSERT never reached the database"
    assert [e for e in bob_socket.get_received() if e["name"] == "message"] == []
    assert snapshot(app) == before
    with app.app_context():
        assert db.session.scalars(sa.select(Message.body)).all() == []
    assert_still_works(sio, bob_socket)
