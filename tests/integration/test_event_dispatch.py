"""How a real gevent server runs a socket's events: in arrival order, a waiting handler holding up nothing else
of its socket, and no more than ``SOCKET_MAX_EVENTS_IN_PROGRESS`` of them at once.

`read` markers wait for their batch's window (made long here), which gives a handler that waits
on demand.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.engineio_wire import RECORD_SEPARATOR, PollingSession, WebSocketSession
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

# Long enough that every other answer of a test comes back while its `read` events wait.
READ_WINDOW_SECONDS = 1.5
MAX_IN_PROGRESS = 3


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dispatch_server")
    server = LiveServer(
        f"sqlite:///{directory / 'chat.db'}",
        directory / "server.log",
        env={
            "READ_MARKER_FLUSH_SECONDS": str(READ_WINDOW_SECONDS),
            "SOCKET_MAX_EVENTS_IN_PROGRESS": str(MAX_IN_PROGRESS),
        },
    ).start()
    yield server
    server.stop()


def open_session(transport: str, url: str, token: str):
    return WebSocketSession(url, token) if transport == "websocket" else PollingSession(url, token)


def send_all(session, packets: list[str]) -> None:
    if isinstance(session, WebSocketSession):
        for packet in packets:
            session.ws.send(packet)
    else:
        assert session.post(RECORD_SEPARATOR.join(packets)).status_code == 200


def acks_in_order(session, count: int) -> list[tuple[int, dict]]:
    """The next ``count`` acks on `/`, as (ack id, payload), in the order they arrived."""
    acks: list[tuple[int, dict]] = []

    def collect(packet: str) -> bool:
        if packet.startswith("43"):
            digits = packet[2:].split("[", 1)[0]
            acks.append((int(digits), json.loads(packet[2 + len(digits) :])[0]))
        return len(acks) == count

    session.read_until(collect)
    return acks


def post_message(session) -> int:
    packet = "4299" + json.dumps(["message", {"room": "general", "body": "hi", "client_id": uuid.uuid4().hex}])
    answer = session.call(packet, ack_id=99)
    assert answer["ok"] is True, answer
    return answer["message"]["id"]


def close(session) -> None:
    if isinstance(session, WebSocketSession):
        session.close()


def test_a_burst_of_events_from_one_socket_is_answered_once_each_in_order(account, chat_server):
    session = WebSocketSession(chat_server.url, account().token)
    try:
        packets = [
            f"42{n}" + json.dumps(["who", {}] if n % 2 else ["typing", {"room": "general", "active": n % 4 == 0}])
            for n in range(1, 201)
        ]
        send_all(session, packets)
        acks = acks_in_order(session, len(packets))
        assert [ack_id for ack_id, _ in acks] == list(range(1, 201))
        assert all(answer["ok"] for _, answer in acks), [a for a in acks if not a[1]["ok"]][:3]
    finally:
        close(session)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_waiting_handler_holds_up_neither_its_sockets_reader_nor_its_later_events(transport, account, chat_server):
    session = open_session(transport, chat_server.url, account().token)
    try:
        message_id = post_message(session)
        send_all(
            session,
            [
                "421" + json.dumps(["read", {"room": "general", "id": message_id}]),
                '422["who",{}]',
                '423["typing",{"room":"general","active":true}]',
            ],
        )
        acks = acks_in_order(session, 3)
        # The `read` waits out its batch's window; the events after it are answered meanwhile.
        assert [ack_id for ack_id, _ in acks] == [2, 3, 1]
        assert acks[2][1] == {"ok": True, "room": "general", "last_read_id": message_id}
        assert acks[0][1]["ok"] and acks[1][1]["ok"]
    finally:
        close(session)


def test_events_past_the_cap_in_progress_are_refused_until_one_finishes(account, chat_server):
    session = WebSocketSession(chat_server.url, account().token)
    try:
        message_id = post_message(session)
        reads = [f"42{n}" + json.dumps(["read", {"room": "general", "id": message_id}]) for n in range(1, 4)]
        send_all(session, [*reads, '424["who",{}]'])
        acks = acks_in_order(session, 4)
        assert acks[0] == (4, {"ok": False, "error": {"code": "rate_limited", "message": "too many events: slow down"}})
        assert sorted(ack_id for ack_id, _ in acks[1:]) == [1, 2, 3]
        assert all(answer == {"ok": True, "room": "general", "last_read_id": message_id} for _, answer in acks[1:])
        # Once they are answered, the socket's events run again.
        assert session.call('425["who",{}]', ack_id=5)["ok"] is True
    finally:
        close(session)
