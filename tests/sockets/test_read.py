"""The `read` event and the `unread` map of `session`: per-membership read markers."""

import pytest

from app.extensions import db
from app.models import Room, RoomMembership


def session_payload(sio) -> dict:
    [session] = [event["args"][0] for event in sio.get_received() if event["name"] == "session"]
    return session


def post(sio, room: str, body: str) -> dict:
    ack = sio.emit("message", {"room": room, "body": body, "client_id": body}, callback=True)
    assert ack["ok"], ack
    return ack["message"]


def marker(app, user, room_name: str) -> int:
    with app.app_context():
        room = db.session.scalar(db.select(Room).where(Room.name == room_name))
        return db.session.get(RoomMembership, (user.id, room.id)).last_read_id


def test_session_lists_unread_count_of_every_member_room(make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    assert ann_sio.emit("join", {"room": "quiet"}, callback=True)["ok"]
    for n in range(3):
        post(ann_sio, "general", f"hello {n}")

    bob_session = session_payload(socket_client(bob))
    ann_session = session_payload(socket_client(ann))

    assert bob_session["unread"] == {"general": 3}
    # Own messages are never unread, and rooms without unread messages still appear.
    assert ann_session["unread"] == {"general": 0, "quiet": 0}


def test_read_moves_the_marker_and_the_next_session_counts_from_it(app, make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    posted = [post(ann_sio, "general", f"m{n}") for n in range(4)]
    bob_sio = socket_client(bob)

    ack = bob_sio.emit("read", {"room": "general", "id": posted[1]["id"]}, callback=True)

    assert ack == {"ok": True, "room": "general", "last_read_id": posted[1]["id"]}
    assert marker(app, bob, "general") == posted[1]["id"]
    bob_sio.disconnect()
    assert session_payload(socket_client(bob))["unread"] == {"general": 2}


def test_read_never_moves_the_marker_back(app, make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    first, second = post(ann_sio, "general", "one"), post(ann_sio, "general", "two")
    bob_sio = socket_client(bob)
    assert bob_sio.emit("read", {"room": "general", "id": second["id"]}, callback=True)["ok"]

    ack = bob_sio.emit("read", {"room": "general", "id": first["id"]}, callback=True)

    assert ack == {"ok": True, "room": "general", "last_read_id": second["id"]}
    assert marker(app, bob, "general") == second["id"]


def test_deleted_messages_are_not_counted(app, make_user, socket_client):
    from app.services import moderation

    ann, bob, moderator = make_user(), make_user(), make_user(admin=True)
    ann_sio = socket_client(ann)
    kept, gone = post(ann_sio, "general", "kept"), post(ann_sio, "general", "gone")
    with app.app_context():
        moderation.delete_message(moderator.id, gone["id"])

    assert kept["id"] < gone["id"]
    assert session_payload(socket_client(bob))["unread"] == {"general": 1}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, "invalid"),
        ("general", "invalid"),
        ({"room": "general"}, "invalid"),
        ({"room": "general", "id": "1"}, "invalid"),
        ({"room": "general", "id": True}, "invalid"),
        ({"room": "general", "id": 0}, "invalid"),
        ({"room": "general", "id": -5}, "invalid"),
        ({"room": "general", "id": 1.5}, "invalid"),
        ({"room": 7, "id": 1}, "invalid"),
        ({"room": "<b>x</b>", "id": 1}, "invalid"),
        ({"room": "x" * 65, "id": 1}, "too_large"),
        ({"room": "nowhere", "id": 1}, "not_found"),
        ({"room": "general", "id": 10**9}, "not_found"),
    ],
)
def test_bad_read_is_refused_and_changes_nothing(app, make_user, socket_client, payload, code):
    ann, bob = make_user(), make_user()
    post(socket_client(ann), "general", "hello")
    bob_sio = socket_client(bob)

    ack = bob_sio.emit("read", payload, callback=True)

    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert ack["error"]["message"]
    assert bob_sio.is_connected()
    assert marker(app, bob, "general") == 0


def test_a_message_of_another_room_cannot_move_the_marker(app, make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    assert ann_sio.emit("join", {"room": "elsewhere"}, callback=True)["ok"]
    post(ann_sio, "general", "here")
    foreign = post(ann_sio, "elsewhere", "there")
    bob_sio = socket_client(bob)

    ack = bob_sio.emit("read", {"room": "general", "id": foreign["id"]}, callback=True)

    assert ack["ok"] is False and ack["error"]["code"] == "not_found"
    assert marker(app, bob, "general") == 0


def test_only_members_keep_a_read_marker(make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    assert ann_sio.emit("join", {"room": "private-ish"}, callback=True)["ok"]
    message = post(ann_sio, "private-ish", "members only marker")

    ack = socket_client(bob).emit("read", {"room": "private-ish", "id": message["id"]}, callback=True)

    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
