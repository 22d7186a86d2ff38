"""The `/` namespace over real websocket and long-polling transports, with python-socketio clients."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.integration.conftest import TRANSPORTS, login_cookie

pytestmark = pytest.mark.integration

MESSAGE_KEYS = {
    "id",
    "room",
    "sender",
    "recipient",
    "body",
    "client_id",
    "created_at",
    "deleted",
    "rev",
    "edited_at",
    "reply_to",
    "mentions",
    "reactions",
    "attachments",
}


def unique_room() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


def unique_client_id() -> str:
    return uuid.uuid4().hex


def with_id(message_id: int):
    return lambda data: isinstance(data, dict) and data.get("id") == message_id


def about_user(user: dict):
    return lambda data: isinstance(data, dict) and data.get("user", {}).get("id") == user["id"]


def assert_not_received(client, name: str, where) -> None:
    """No ``name`` event matching ``where`` reached ``client``.

    Checked after a round trip on the same connection: the server writes a socket's
    packets in order, so anything it sent to this socket earlier has arrived by then.
    """
    assert client.call("who", {})["ok"] is True
    assert client.received(name, where) == []


def join(client, room: str) -> dict:
    answer = client.call("join", {"room": room})
    assert answer["ok"] is True, answer
    return answer


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_session_event_describes_the_user_and_their_rooms(transport, account, connect):
    alice = account()

    client = connect(alice, transport)

    session = client.wait_for("session")
    assert client.sio.transport() == transport
    assert session["user"] == alice.user
    assert session["sid"] == client.sid
    [general] = [room for room in session["rooms"] if room["name"] == "general"]
    assert general["members"] >= 1
    assert general["online"] >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_room_messages_flow_both_ways_and_reach_the_senders_other_tabs(transport, account, connect):
    alice, bob = account(), account()
    alice_tab, alice_other_tab = connect(alice, transport), connect(alice, transport)
    bob_tab = connect(bob, transport)
    room = unique_room()
    join(alice_tab, room)
    join(bob_tab, room)

    client_id = unique_client_id()
    answer = alice_tab.call("message", {"room": room, "body": "  hello bob  ", "client_id": client_id})

    assert answer["ok"] is True, answer
    sent = answer["message"]
    assert set(sent) == MESSAGE_KEYS
    assert sent["room"] == room
    assert sent["sender"] == alice.user
    assert sent["recipient"] is None
    assert sent["body"] == "hello bob"
    assert sent["client_id"] == client_id
    assert sent["created_at"].endswith("Z")
    assert sent["deleted"] is False
    assert bob_tab.wait_for("message", with_id(sent["id"])) == sent
    assert alice_other_tab.wait_for("message", with_id(sent["id"])) == sent
    assert_not_received(alice_tab, "message", with_id(sent["id"]))

    reply = bob_tab.call("message", {"room": room, "body": "hi alice", "client_id": unique_client_id()})

    assert reply["ok"] is True, reply
    assert reply["message"]["id"] > sent["id"]
    assert alice_tab.wait_for("message", with_id(reply["message"]["id"])) == reply["message"]
    assert alice_other_tab.wait_for("message", with_id(reply["message"]["id"])) == reply["message"]
    assert_not_received(bob_tab, "message", with_id(reply["message"]["id"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_room_message_reaches_only_members_of_that_room(transport, account, connect):
    alice, bob, carol = account(), account(), account()
    alice_tab, bob_tab, carol_tab = connect(alice, transport), connect(bob, transport), connect(carol, transport)
    room = unique_room()
    join(alice_tab, room)
    join(bob_tab, room)

    answer = alice_tab.call("message", {"room": room, "body": "members only", "client_id": unique_client_id()})

    assert answer["ok"] is True, answer
    bob_tab.wait_for("message", with_id(answer["message"]["id"]))
    assert_not_received(carol_tab, "message", with_id(answer["message"]["id"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dm_by_sid_reaches_exactly_that_socket_and_the_senders_other_tabs(transport, account, connect):
    alice, bob = account(), account()
    alice_tab, alice_other_tab = connect(alice, transport), connect(alice, transport)
    bob_tab, bob_other_tab = connect(bob, transport), connect(bob, transport)

    answer = alice_tab.call("dm", {"to_sid": bob_tab.sid, "body": "just this tab", "client_id": unique_client_id()})

    assert answer["ok"] is True, answer
    sent = answer["message"]
    assert set(sent) == MESSAGE_KEYS
    assert sent["room"] is None
    assert sent["sender"] == alice.user
    assert sent["recipient"] == bob.user
    assert sent["body"] == "just this tab"
    assert bob_tab.wait_for("dm", with_id(sent["id"])) == sent
    assert alice_other_tab.wait_for("dm", with_id(sent["id"])) == sent
    assert_not_received(bob_other_tab, "dm", with_id(sent["id"]))
    assert_not_received(alice_tab, "dm", with_id(sent["id"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dm_by_username_reaches_every_socket_of_the_recipient(transport, account, connect):
    alice, bob = account(), account()
    alice_tab, alice_other_tab = connect(alice, transport), connect(alice, transport)
    bob_tab, bob_other_tab = connect(bob, transport), connect(bob, transport)

    answer = alice_tab.call("dm", {"to_user": bob.username, "body": "every tab", "client_id": unique_client_id()})

    assert answer["ok"] is True, answer
    sent = answer["message"]
    assert sent["recipient"] == bob.user
    assert bob_tab.wait_for("dm", with_id(sent["id"])) == sent
    assert bob_other_tab.wait_for("dm", with_id(sent["id"])) == sent
    assert alice_other_tab.wait_for("dm", with_id(sent["id"])) == sent
    assert_not_received(alice_tab, "dm", with_id(sent["id"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dm_to_an_unknown_sid_or_user_is_not_found(transport, account, connect):
    alice = account()
    alice_tab = connect(alice, transport)

    by_sid = alice_tab.call("dm", {"to_sid": "no-such-sid", "body": "hello?", "client_id": unique_client_id()})
    by_user = alice_tab.call("dm", {"to_user": "nobody-here", "body": "hello?", "client_id": unique_client_id()})

    assert by_sid["ok"] is False and by_sid["error"]["code"] == "not_found", by_sid
    assert by_user["ok"] is False and by_user["error"]["code"] == "not_found", by_user
    assert alice_tab.call("sync", {"after": 0})["messages"] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_presence_announces_a_users_first_socket_and_last_socket(transport, account, connect):
    alice, bob = account(), account()
    alice_tab = connect(alice, transport)

    bob_tab = connect(bob, transport)
    online = alice_tab.wait_for("presence", about_user(bob.user))
    bob_other_tab = connect(bob, transport)
    bob_tab.close()
    bob_other_tab.close()
    offline = alice_tab.wait_for("presence", lambda data: about_user(bob.user)(data) and data["online"] is False)

    assert online == {"user": bob.user, "online": True}
    assert offline == {"user": bob.user, "online": False}
    # One announcement each way, although bob opened and closed two sockets.
    assert alice_tab.received("presence", about_user(bob.user)) == [online, offline]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_typing_reaches_the_other_members_of_the_room(transport, account, connect):
    alice, bob, carol = account(), account(), account()
    alice_tab, bob_tab, carol_tab = connect(alice, transport), connect(bob, transport), connect(carol, transport)
    room = unique_room()
    join(alice_tab, room)
    join(bob_tab, room)

    alice_tab.emit("typing", {"room": room, "active": True})
    started = bob_tab.wait_for("typing", about_user(alice.user))
    alice_tab.emit("typing", {"room": room, "active": False})
    stopped = bob_tab.wait_for("typing", lambda data: about_user(alice.user)(data) and data["active"] is False)

    assert started == {"room": room, "user": alice.user, "active": True}
    assert stopped == {"room": room, "user": alice.user, "active": False}
    assert_not_received(alice_tab, "typing", about_user(alice.user))
    assert_not_received(carol_tab, "typing", about_user(alice.user))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_typing_in_a_room_one_has_not_joined_is_forbidden(transport, account, connect):
    alice, bob = account(), account()
    alice_tab, bob_tab = connect(alice, transport), connect(bob, transport)
    room = unique_room()
    join(bob_tab, room)

    answer = alice_tab.call("typing", {"room": room, "active": True})

    assert answer["ok"] is False and answer["error"]["code"] == "forbidden", answer
    assert_not_received(bob_tab, "typing", about_user(alice.user))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_session_cookie_from_the_login_form_signs_a_socket_in(transport, account, chat_server, open_client):
    alice, bob = account(), account()
    cookie = login_cookie(chat_server.url, alice)
    bob_tab = open_client(chat_server.url, transport).connect(token=bob.token)

    alice_tab = open_client(chat_server.url, transport).connect(cookie=cookie)

    assert alice_tab.wait_for("session")["user"] == alice.user
    answer = alice_tab.call(
        "message", {"room": "general", "body": "signed in by cookie", "client_id": unique_client_id()}
    )
    assert answer["ok"] is True, answer
    assert bob_tab.wait_for("message", with_id(answer["message"]["id"]))["sender"] == alice.user


def test_login_form_refuses_a_post_without_its_csrf_token(account, chat_server):
    alice = account()
    browser = requests.Session()

    browser.post(
        f"{chat_server.url}/login",
        data={"username": alice.username, "password": alice.password},
        timeout=10,
    )

    chat_page = browser.get(f"{chat_server.url}/", allow_redirects=False, timeout=10)
    assert chat_page.status_code == 302
    assert chat_page.headers["Location"].endswith("/login?next=/")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "credentials",
    [{}, {"token": "not-a-token"}, {"cookie": "session=forged.cookie.value"}],
    ids=["anonymous", "bad-token", "forged-cookie"],
)
def test_connections_without_valid_credentials_are_refused_as_unauthorized(
    transport, credentials, chat_server, open_client
):
    client = open_client(chat_server.url, transport)

    errors = client.connect_refused(**credentials)

    assert errors["/"] == [{"message": "unauthorized"}]
    assert client.events == []


def test_websocket_and_polling_clients_talk_to_each_other(account, connect):
    alice, bob = account(), account()
    alice_ws, bob_polling = connect(alice, "websocket"), connect(bob, "polling")
    room = unique_room()
    join(alice_ws, room)
    join(bob_polling, room)

    from_ws = alice_ws.call("message", {"room": room, "body": "over websocket", "client_id": unique_client_id()})
    from_polling = bob_polling.call(
        "dm", {"to_sid": alice_ws.sid, "body": "over polling", "client_id": unique_client_id()}
    )

    assert bob_polling.wait_for("message", with_id(from_ws["message"]["id"])) == from_ws["message"]
    assert alice_ws.wait_for("dm", with_id(from_polling["message"]["id"])) == from_polling["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_repeated_client_id_returns_the_stored_message_and_is_delivered_once(transport, account, connect):
    alice, bob = account(), account()
    alice_tab, bob_tab = connect(alice, transport), connect(bob, transport)
    room = unique_room()
    join(alice_tab, room)
    join(bob_tab, room)
    client_id = unique_client_id()

    first = alice_tab.call("message", {"room": room, "body": "only once", "client_id": client_id})
    repeat = alice_tab.call("message", {"room": room, "body": "a different body", "client_id": client_id})

    assert first["ok"] is True, first
    assert repeat == first
    bob_tab.wait_for("message", with_id(first["message"]["id"]))
    assert_not_received(bob_tab, "message", lambda data: data["body"] == "a different body")
    assert bob_tab.received("message", with_id(first["message"]["id"])) == [first["message"]]
    history = bob_tab.call("history", {"room": room})
    assert [message["id"] for message in history["messages"]] == [first["message"]["id"]]
