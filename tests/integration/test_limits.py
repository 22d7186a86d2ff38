"""Limits on the wire: packet size, handshake origins, rate limits and bad input, against a real server."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket

from tests.integration.conftest import TRANSPORTS
from tests.integration.engineio_wire import (
    RECORD_SEPARATOR,
    PollingSession,
    WebSocketSession,
    event_packet,
    socketio_path,
)

pytestmark = pytest.mark.integration

MAX_PACKET_BYTES = 1_000_000


def unique_client_id() -> str:
    return uuid.uuid4().hex


def room_history(server_url: str, token: str, room: str = "general") -> list[dict]:
    response = requests.get(
        f"{server_url}/api/rooms/{room}/messages",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def messages_sent_by(client, account) -> list[dict]:
    answer = client.call("sync", {"after": 0})
    assert answer["ok"] is True, answer
    return [message for message in answer["messages"] if message["sender"]["id"] == account.user["id"]]


def message_packet(size: int, *, ack_id: int = 1, pad: str = "x") -> str:
    return event_packet(
        "message", {"room": "general", "client_id": unique_client_id(), "body": pad}, ack_id=ack_id, size=size
    )


# -- packet size --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_packet_over_one_megabyte_closes_every_namespace_of_that_connection_only(
    transport, account, connect, open_client, chat_server
):
    admin, bystander, listener = account(admin=True), account(), account()
    multiplexed = open_client(chat_server.url, transport, namespaces=("/", "/admin")).connect(token=admin.token)
    bystander_tab, listener_tab = connect(bystander, transport), connect(listener, transport)
    assert multiplexed.call("stats", {}, namespace="/admin")["ok"] is True
    oversized_id = unique_client_id()

    multiplexed.emit("message", {"room": "general", "body": "x" * (MAX_PACKET_BYTES + 1), "client_id": oversized_id})

    multiplexed.wait_disconnected("/")
    multiplexed.wait_disconnected("/admin")
    assert not multiplexed.connected
    # The server let go of the socket too: its user went offline for everyone else.
    went_offline = listener_tab.wait_for(
        "presence", lambda data: data["user"]["id"] == admin.user["id"] and data["online"] is False
    )
    assert went_offline == {"user": admin.user, "online": False}
    answer = bystander_tab.call("message", {"room": "general", "body": "still here", "client_id": unique_client_id()})
    assert answer["ok"] is True, answer
    assert listener_tab.wait_for("message", lambda data: data["id"] == answer["message"]["id"]) == answer["message"]
    assert oversized_id not in {message["client_id"] for message in room_history(chat_server.url, bystander.token)}


@pytest.mark.parametrize("pad", ["x", "é"], ids=["ascii", "two-byte-utf8"])
def test_websocket_packet_limit_counts_bytes_and_allows_exactly_one_megabyte(pad, account, chat_server):
    alice = account()
    session = WebSocketSession(chat_server.url, alice.token)
    try:
        at_limit = session.call(message_packet(MAX_PACKET_BYTES, ack_id=1, pad=pad), ack_id=1)
        assert at_limit["ok"] is False and at_limit["error"]["code"] == "too_large", at_limit

        assert session.closed_by_server(message_packet(MAX_PACKET_BYTES + 2, ack_id=2, pad=pad))
    finally:
        session.close()


def test_websocket_frame_announcing_too_many_bytes_is_refused_before_its_payload_arrives(account, chat_server):
    alice = account()
    session = WebSocketSession(chat_server.url, alice.token)
    # Only the header and a first chunk of a 50 MB frame: a server that waited for the
    # whole payload before looking at its size would never answer.
    frame = websocket.ABNF(fin=1, opcode=websocket.ABNF.OPCODE_TEXT, data="")
    frame.get_mask_key = lambda length: b"\x01\x02\x03\x04"
    header = frame.format()[:2]
    announced = (50_000_000).to_bytes(8, "big")
    try:
        session.ws.sock.sendall(bytes([header[0], 0x80 | 127]) + announced + b"\x01\x02\x03\x04" + b"4" * 1024)
        assert session.closed_by_server("")
    finally:
        session.close()


def send_fragmented(session: WebSocketSession, packet: str, fragments: int) -> None:
    """Send ``packet`` as one websocket message split over ``fragments`` frames, with a ping between two."""
    data = packet.encode()
    step = len(data) // fragments + 1
    chunks = [data[start : start + step] for start in range(0, len(data), step)]
    for index, chunk in enumerate(chunks):
        opcode = websocket.ABNF.OPCODE_TEXT if index == 0 else websocket.ABNF.OPCODE_CONT
        session.ws.send_frame(websocket.ABNF.create_frame(chunk, opcode, fin=int(index == len(chunks) - 1)))
        if index == 0:
            session.ws.send_frame(websocket.ABNF.create_frame(b"still there?", websocket.ABNF.OPCODE_PING))


def test_fragmented_websocket_message_is_reassembled_and_limited_as_a_whole(account, chat_server):
    alice = account()
    session = WebSocketSession(chat_server.url, alice.token)
    try:
        client_id = unique_client_id()
        packet = event_packet("message", {"room": "general", "client_id": client_id, "body": "é"}, ack_id=1, size=4000)
        send_fragmented(session, packet, fragments=3)
        answer = session.read_until(lambda received: received.startswith("431"))
        assert json.loads(answer[3:])[0]["message"]["client_id"] == client_id

        # Each frame is far under the limit; together they are over it.
        oversized = message_packet(MAX_PACKET_BYTES + 2, ack_id=2)
        send_fragmented(session, oversized, fragments=4)
        assert session.closed_by_server("")
    finally:
        session.close()


def test_polling_packet_limit_allows_exactly_one_megabyte_and_closes_the_session_above(account, chat_server):
    alice = account()
    session = PollingSession(chat_server.url, alice.token)

    at_limit = session.call(message_packet(MAX_PACKET_BYTES, ack_id=1), ack_id=1)
    assert at_limit["ok"] is False and at_limit["error"]["code"] == "too_large", at_limit

    # Like every long-polling client, keep a GET waiting. If it reached the server first it
    # carries the close packet; if the POST won the race the session is already gone.
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting_poll = pool.submit(session.poll)
        oversized = session.post(message_packet(MAX_PACKET_BYTES + 1, ack_id=2))
        closing_poll = waiting_poll.result()

    assert oversized.status_code == 400
    assert closing_poll.status_code == 400 or "1" in closing_poll.text.split(RECORD_SEPARATOR), closing_poll.text
    assert session.poll().status_code == 400  # the session is gone, not just the request


def test_oversized_poll_is_answered_and_ends_the_session_with_no_get_waiting(account, chat_server):
    alice = account()
    session = PollingSession(chat_server.url, alice.token)

    oversized = session.post(message_packet(MAX_PACKET_BYTES + 1, ack_id=1))

    assert oversized.status_code == 400
    assert session.poll().status_code == 400


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_body_over_the_limit_in_a_packet_under_it_is_too_large_and_the_socket_stays(
    transport, account, connect, chat_server
):
    alice = account()
    alice_tab = connect(alice, transport)
    client_id = unique_client_id()

    answer = alice_tab.call("message", {"room": "general", "body": "x" * 4001, "client_id": client_id})

    assert answer["ok"] is False and answer["error"]["code"] == "too_large", answer
    assert alice_tab.connected
    assert (
        alice_tab.call("message", {"room": "general", "body": "x" * 4000, "client_id": unique_client_id()})["ok"]
        is True
    )
    assert client_id not in {message["client_id"] for message in room_history(chat_server.url, alice.token)}


# -- origins ------------------------------------------------------------------


def polling_handshake(server_url: str, origin: str | None) -> requests.Response:
    headers = {"Origin": origin} if origin is not None else {}
    return requests.get(socketio_path(server_url, "polling"), headers=headers, timeout=10)


def websocket_handshake_opens(server_url: str, origin: str | None) -> bool:
    """Whether a websocket handshake from ``origin`` gets as far as the Engine.IO open packet."""
    url = socketio_path(server_url, "websocket").replace("http://", "ws://", 1)
    options = {"origin": origin} if origin is not None else {"suppress_origin": True}
    try:
        ws = websocket.create_connection(url, timeout=10, **options)
    except websocket.WebSocketBadStatusException:
        return False
    try:
        while True:
            packet = ws.recv()
            if not packet:
                return False
            if packet.startswith("0{"):
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return False
    finally:
        ws.close()
        ws.shutdown()


FOREIGN_ORIGINS = ["http://evil.example", "http://localhost:1", "https://127.0.0.1", "null"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_is_refused_on_both_transports(origin, chat_server):
    response = polling_handshake(chat_server.url, origin)

    assert response.status_code == 400
    assert not websocket_handshake_opens(chat_server.url, origin)


@pytest.mark.parametrize("proto", ["http", "https"])
def test_forwarded_headers_sent_by_a_client_do_not_get_a_foreign_origin_past_the_check(proto, chat_server):
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": proto}
    polling = requests.get(
        socketio_path(chat_server.url, "polling"), headers={"Origin": f"{proto}://evil.example", **forged}, timeout=10
    )
    assert polling.status_code == 400

    url = socketio_path(chat_server.url, "websocket").replace("http://", "ws://", 1)
    try:
        ws = websocket.create_connection(
            url, timeout=10, origin=f"{proto}://evil.example", header=[f"{k}: {v}" for k, v in forged.items()]
        )
    except websocket.WebSocketBadStatusException:
        return
    try:
        assert not ws.recv().startswith("0{")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass
    finally:
        ws.close()
        ws.shutdown()


def test_no_origin_and_the_servers_own_origin_are_allowed(chat_server):
    for origin in (None, chat_server.url):
        response = polling_handshake(chat_server.url, origin)
        assert response.status_code == 200, (origin, response.text)
        assert response.text.startswith("0{")
        assert websocket_handshake_opens(chat_server.url, origin), origin


def test_chat_allowed_origins_adds_an_origin_and_keeps_the_servers_own(live_server_factory):
    server = live_server_factory(env={"CHAT_ALLOWED_ORIGINS": "http://allowed.example"})

    for origin in ("http://allowed.example", server.url):
        assert polling_handshake(server.url, origin).status_code == 200, origin
        assert websocket_handshake_opens(server.url, origin), origin
    assert polling_handshake(server.url, "http://evil.example").status_code == 400
    assert not websocket_handshake_opens(server.url, "http://evil.example")


# -- rate limit ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_twenty_first_message_in_ten_seconds_is_rate_limited(transport, account, connect, chat_server):
    alice, bob = account(), account()
    alice_tab, bob_tab = connect(alice, transport), connect(bob, transport)
    client_ids = [unique_client_id() for _ in range(21)]

    answers = [
        alice_tab.call("message", {"room": "general", "body": f"burst {n}", "client_id": client_id})
        for n, client_id in enumerate(client_ids)
    ]
    dm_answer = alice_tab.call("dm", {"to_user": bob.username, "body": "one more", "client_id": unique_client_id()})

    assert [answer["ok"] for answer in answers[:20]] == [True] * 20, answers
    assert answers[20] == {"ok": False, "error": {"code": "rate_limited", "message": answers[20]["error"]["message"]}}
    assert dm_answer["ok"] is False and dm_answer["error"]["code"] == "rate_limited"
    stored = {message["client_id"] for message in room_history(chat_server.url, alice.token)}
    assert set(client_ids[:20]) <= stored
    assert client_ids[20] not in stored
    # The limit is per user: bob is unaffected by alice's burst.
    assert (
        bob_tab.call("message", {"room": "general", "body": "my turn", "client_id": unique_client_id()})["ok"] is True
    )


# -- bad input ----------------------------------------------------------------

BAD_PAYLOADS = [
    ("message", "not an object", "invalid"),
    ("message", ["room", "general"], "invalid"),
    ("message", {"body": "no room", "client_id": "c1"}, "invalid"),
    ("message", {"room": "general", "body": 42, "client_id": "c2"}, "invalid"),
    ("message", {"room": "general", "body": "   ", "client_id": "c3"}, "invalid"),
    ("message", {"room": "general", "body": "long id", "client_id": "c" * 65}, "too_large"),
    ("message", {"room": "no-such-room-here", "body": "hello", "client_id": "c4"}, "not_found"),
    ("dm", {"to_user": 7, "body": "hello", "client_id": "c5"}, "invalid"),
    ("dm", {"body": "to nobody", "client_id": "c6"}, "invalid"),
    ("join", {"room": "Not A Room!"}, "invalid"),
    ("join", {"room": "r" * 65}, "too_large"),
    ("history", {"room": "general", "limit": "ten"}, "invalid"),
    ("sync", {"after": "yesterday"}, "invalid"),
    ("no_such_event", {}, "invalid"),
]


def room_names(server_url: str, token: str) -> list[str]:
    response = requests.get(f"{server_url}/api/rooms", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(room["name"] for room in response.json()["rooms"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_input_gets_an_error_ack_changes_nothing_and_keeps_the_socket(transport, account, connect, chat_server):
    alice = account()
    alice_tab = connect(alice, transport)
    rooms_before = room_names(chat_server.url, alice.token)

    answers = [alice_tab.call(event, payload) for event, payload, _code in BAD_PAYLOADS]

    for answer, (event, payload, code) in zip(answers, BAD_PAYLOADS, strict=True):
        assert answer["ok"] is False, (event, payload, answer)
        assert answer["error"]["code"] == code, (event, payload, answer)
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"], answer
    assert alice_tab.connected
    assert messages_sent_by(alice_tab, alice) == []
    assert room_names(chat_server.url, alice.token) == rooms_before


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_binary_body_is_invalid_and_the_socket_stays(transport, account, connect):
    alice = account()
    alice_tab = connect(alice, transport)

    answer = alice_tab.call("message", {"room": "general", "body": b"\x00\x01binary", "client_id": unique_client_id()})

    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    assert alice_tab.connected
    assert messages_sent_by(alice_tab, alice) == []
