"""The `/` namespace on connect: who may open a socket, the session payload, presence."""

import pytest
from socketio import packet

from app.extensions import socketio
from app.services import rooms, users
from tests.support.moderation import ban, moderator_id


def received(sio, name: str) -> list:
    """Payloads of every ``name`` event the test client got since the last call (others are dropped)."""
    payloads = []
    for event in sio.get_received():
        if event["name"] != name:
            continue
        # The test client unwraps the single argument of "message" events only.
        payloads.append(event["args"] if name == "message" else event["args"][0])
    return payloads


@pytest.fixture
def refusals(app):
    """The connect_error payloads the server sends, as a real client would see them.

    Call ``install()`` after creating the test client: it swaps in its own packet
    sender when constructed, and this wraps that one.
    """
    seen = []

    def install():
        server = socketio.server
        deliver = server._send_packet

        def record(eio_sid, pkt):
            if pkt.packet_type == packet.CONNECT_ERROR:
                seen.append(pkt.data)
            return deliver(eio_sid, pkt)

        server._send_packet = record

    return seen, install


def login_client(app, user):
    client = app.test_client()
    response = client.post("/login", data={"username": user.username, "password": user.password})
    assert response.status_code == 302
    return client


def token_for(app, user) -> str:
    with app.app_context():
        return users.issue_token(
            users.find_user(user.username), app.config["SECRET_KEY"], app.config["TOKEN_TTL_SECONDS"]
        )["token"]


def test_connect_with_the_login_cookie_sends_session(socket_client, make_user):
    ann = make_user("ann")
    sio = socket_client(ann)
    assert sio.is_connected()
    [session] = received(sio, "session")
    assert session["user"] == ann.to_dict()
    assert isinstance(session["sid"], str) and session["sid"]
    assert session["rooms"] == [{"name": "general", "members": 1, "online": 1, "topic": "", "private": False}]


def test_connect_with_a_token(app, make_user):
    ann = make_user("ann")
    sio = socketio.test_client(app, auth={"token": token_for(app, ann)})
    try:
        assert sio.is_connected()
        [session] = received(sio, "session")
        assert session["user"] == ann.to_dict()
    finally:
        sio.disconnect()


def test_session_lists_persisted_memberships_with_counts(socket_client, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    first = socket_client(ann)
    assert first.emit("join", {"room": "random"}, callback=True)["ok"] is True
    first.disconnect()
    socket_client(bob)
    again = socket_client(ann)
    [session] = received(again, "session")
    assert session["rooms"] == [
        {"name": "general", "members": 2, "online": 2, "topic": "", "private": False},
        {"name": "random", "members": 1, "online": 1, "topic": "", "private": False},
    ]


def test_anonymous_socket_is_refused_with_unauthorized(app, refusals):
    seen, install = refusals
    anonymous = app.test_client()
    sio = socketio.test_client(app, flask_test_client=anonymous)
    assert not sio.is_connected()
    install()
    sio.connect()
    assert not sio.is_connected()
    assert seen == [{"message": "unauthorized"}]


@pytest.mark.parametrize("token", ["not-a-token", "", 42, None, ["x"]])
def test_bad_token_is_refused_with_unauthorized(app, refusals, token):
    seen, install = refusals
    sio = socketio.test_client(app, auth={"token": token})
    assert not sio.is_connected()
    install()
    sio.connect(auth={"token": token})
    assert seen == [{"message": "unauthorized"}]


def test_bad_token_is_refused_even_with_a_valid_cookie(app, socket_client, make_user, login):
    ann = make_user("ann")
    sio = socketio.test_client(app, flask_test_client=login(ann), auth={"token": "forged"})
    assert not sio.is_connected()


def test_banned_user_is_refused_with_banned(app, make_user, login, refusals):
    seen, install = refusals
    ann = make_user("ann")
    token = token_for(app, ann)
    cookie_client = login(ann)
    with app.app_context():
        ban("ann")
    by_cookie = socketio.test_client(app, flask_test_client=cookie_client)
    by_token = socketio.test_client(app, auth={"token": token})
    assert not by_cookie.is_connected()
    assert not by_token.is_connected()
    install()
    by_cookie.connect()
    by_token.connect(auth={"token": token})
    assert seen == [{"message": "banned"}, {"message": "banned"}]


def test_presence_online_only_for_the_first_socket_and_offline_only_for_the_last(socket_client, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    watcher = socket_client(bob)
    watcher.get_received()
    tab1 = socket_client(ann)
    assert received(watcher, "presence") == [{"user": ann.to_dict(), "online": True}]
    tab1.get_received()
    tab2 = socket_client(ann)
    assert received(watcher, "presence") == []
    assert received(tab1, "presence") == []
    tab1.disconnect()
    assert received(watcher, "presence") == []
    tab2.disconnect()
    assert received(watcher, "presence") == [{"user": ann.to_dict(), "online": False}]


def test_every_socket_of_a_user_is_in_the_users_rooms(socket_client, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    tab1, tab2 = socket_client(ann), socket_client(ann)
    sender = socket_client(bob)
    for sio in (tab1, tab2, sender):
        sio.get_received()
    ack = sender.emit("message", {"room": "general", "body": "hi", "client_id": "c1"}, callback=True)
    assert ack["ok"] is True
    assert received(tab1, "message") == [ack["message"]]
    assert received(tab2, "message") == [ack["message"]]


def test_a_failure_while_connecting_is_refused_with_internal_and_leaves_no_presence(
    app, socket_client, make_user, refusals, monkeypatch, caplog
):
    seen, install = refusals
    ann, bob = make_user("ann"), make_user("bob")
    watcher = socket_client(bob)
    watcher.get_received()
    flask_client = login_client(app, ann)

    def broken_rooms_of(user_id):
        raise RuntimeError("the rooms query blew up")

    monkeypatch.setattr(rooms, "member_rooms", broken_rooms_of)
    sio = socketio.test_client(app, flask_test_client=flask_client)
    assert not sio.is_connected()
    install()
    sio.connect()
    assert not sio.is_connected()
    assert seen == [{"message": "internal"}]
    assert "the rooms query blew up" in caplog.text
    monkeypatch.undo()
    assert [e for e in watcher.get_received() if e["name"] == "presence"] == []
    who = watcher.emit("who", {}, callback=True)
    assert [entry["user"]["username"] for entry in who["users"]] == ["bob"]


def test_a_ban_committed_while_the_socket_is_being_set_up_refuses_it(app, make_user, login, refusals):
    seen, install = refusals
    ann, bob = make_user("ann"), make_user("bob")
    with app.app_context():
        moderator_id()  # the acting admin exists before the race
    watcher = socketio.test_client(app, flask_test_client=login(bob))
    watcher.get_received()
    presence = app.extensions["switchboard.presence"]
    register = presence.add

    def ban_then_register(info):
        # The admin's ban commits and sweeps the registered sockets just before this one registers.
        ban("ann")
        return register(info)

    presence.add = ban_then_register
    try:
        late = socketio.test_client(app, flask_test_client=login(ann))
        assert not late.is_connected()
        install()
        late.connect()
    finally:
        presence.add = register
    assert seen == [{"message": "banned"}]
    assert presence.sids_of(ann.id) == []
    assert [e for e in watcher.get_received() if e["name"] == "presence"] == []
    watcher.disconnect()
