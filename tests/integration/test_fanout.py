"""Direct writes of room emits (app/sockets/fanout.py) on a real server: exactly once, in order, never stalled.

Receivers are raw websockets read by one thread each, so the order recorded is the order
of the frames on the wire (python-socketio's client runs handlers in threads of their own).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import engineio.socket
import pytest
import requests
import socketio
import websocket

from app.sockets import fanout
from tests.integration.conftest import PASSWORD, Account
from tests.integration.engineio_wire import RECORD_SEPARATOR, socketio_path
from tests.integration.recording_client import RecordingClient
from tests.support import api
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

WAIT_SECONDS = 10
# Every member must have the whole burst this long after the last ack, slow reader or not.
DELIVERY_BOUND_SECONDS = 15
# Generous budgets: the tests send hundreds of messages from a few users in seconds.
BURST_ENV = {
    "RATE_LIMIT_COUNT": "100000",
    "SOCKET_EVENT_BURST": "100000",
    "USER_EVENT_BURST": "100000",
}


@pytest.fixture(scope="module")
def fanout_server(tmp_path_factory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("fanout_server")
    server = LiveServer(f"sqlite:///{directory / 'chat.db'}", directory / "server.log", env=BURST_ENV).start()
    yield server
    server.stop()


def new_account(server: LiveServer) -> Account:
    answer = api.register_and_token(server.url, api.new_username("fan"), PASSWORD)
    return Account(token=answer["token"], user=answer["user"], password=PASSWORD)


def fresh_room() -> str:
    return f"fanout-{uuid.uuid4().hex[:10]}"


def message_of(packet: str):
    """The MESSAGE payload of a ``message`` event packet on `/`, else None."""
    if packet.startswith('42["message",'):
        return json.loads(packet[2:])[1]
    return None


class RawReceiver:
    """A websocket client on `/`, joined to ``room``, recording the ids of that room's messages as they arrive."""

    def __init__(self, base_url: str, token: str, room: str, *, receive_buffer: int | None = None):
        self.room = room
        self.ids: list[int] = []
        self.stopped = threading.Event()
        url = socketio_path(base_url, "websocket").replace("http://", "ws://", 1)
        options = ((socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer),) if receive_buffer else ()
        self.ws = websocket.create_connection(url, timeout=WAIT_SECONDS, suppress_origin=True, sockopt=options)
        assert self.ws.recv().startswith("0{")
        self.ws.send("40" + json.dumps({"token": token}))
        self._read_until(lambda packet: packet.startswith("40{"))
        self.ws.send("421" + json.dumps(["join", {"room": room}]))
        answer = self._read_until(lambda packet: packet.startswith("431"))
        assert json.loads(answer[3:])[0]["ok"] is True, answer
        self.thread: threading.Thread | None = None

    def _handle(self, packet: str) -> None:
        if packet == "2":
            self.ws.send("3")
            return
        message = message_of(packet)
        if message is not None and message["room"] == self.room:
            self.ids.append(message["id"])

    def _read_until(self, matches) -> str:
        while True:
            packet = self.ws.recv()
            if matches(packet):
                return packet
            self._handle(packet)

    def start(self) -> RawReceiver:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        while not self.stopped.is_set():
            try:
                packet = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, OSError):
                return
            if not packet:
                return
            self._handle(packet)

    def wait_for(self, count: int, deadline: float) -> None:
        while len(self.ids) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.stopped.set()
        self.ws.close()
        self.ws.shutdown()
        if self.thread is not None:
            self.thread.join(timeout=WAIT_SECONDS)


def burst(server: LiveServer, room: str, senders: list[RecordingClient], per_sender: int) -> list[list[int]]:
    """Each sender posts ``per_sender`` messages one after another, all senders at once; the acked ids per sender."""
    acked: list[list[int]] = [[] for _ in senders]
    failures: list[object] = []

    def send_all(index: int, client: RecordingClient) -> None:
        try:
            for number in range(per_sender):
                answer = client.call(
                    "message", {"room": room, "body": f"{index}-{number}", "client_id": uuid.uuid4().hex}
                )
                assert answer["ok"] is True, answer
                acked[index].append(answer["message"]["id"])
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=send_all, args=(index, client)) for index, client in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return acked


def sender_clients(server: LiveServer, room: str, count: int, opened: list) -> list[RecordingClient]:
    clients = []
    for _ in range(count):
        client = RecordingClient(server.url, transport="websocket")
        opened.append(client)
        client.connect(token=new_account(server).token)
        client.wait_for("session")
        assert client.call("join", {"room": room})["ok"] is True
        clients.append(client)
    return clients


def assert_exactly_once_in_order(ids: list[int], acked: list[list[int]]) -> None:
    everything = sorted(i for sent in acked for i in sent)
    assert len(ids) == len(set(ids)), "a message arrived twice"
    assert sorted(ids) == everything, f"missing {sorted(set(everything) - set(ids))[:10]}"
    position = {message_id: index for index, message_id in enumerate(ids)}
    for sent in acked:
        # One sender waits for each ack: its messages were emitted in this order.
        assert sorted(sent, key=position.__getitem__) == sent, "a sender's messages arrived out of order"


def writers_running(server: LiveServer) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return float(re.search(r"^switchboard_socket_writers (\S+)$", text, re.M).group(1))


def wait_for_writers(server: LiveServer, matches, seconds: float = WAIT_SECONDS) -> float:
    deadline = time.monotonic() + seconds
    while not matches(count := writers_running(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def delivery_counts(server: LiveServer) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return {
        path: float(value)
        for path, value in re.findall(r'^switchboard_emit_deliveries_total\{path="(\w+)"\} (\S+)$', text, re.M)
    }


@pytest.fixture
def opened() -> Iterator[list]:
    things: list = []
    yield things
    for thing in things:
        thing.close()


def test_a_room_of_thirty_websockets_gets_a_burst_exactly_once_and_in_order(fanout_server, opened):
    room = fresh_room()
    listener = new_account(fanout_server)
    receivers = []
    for _ in range(30):
        receiver = RawReceiver(fanout_server.url, listener.token, room)
        opened.append(receiver)
        receivers.append(receiver.start())
    senders = sender_clients(fanout_server, room, 4, opened)
    before = delivery_counts(fanout_server)

    acked = burst(fanout_server, room, senders, 125)

    deadline = time.monotonic() + DELIVERY_BOUND_SECONDS
    for receiver in receivers:
        receiver.wait_for(500, deadline)
    for receiver in receivers:
        assert_exactly_once_in_order(receiver.ids, acked)
    # One emit reaches every socket before the next: all members see one order.
    assert all(receiver.ids == receivers[0].ids for receiver in receivers)
    after = delivery_counts(fanout_server)
    assert after.get("direct", 0) > before.get("direct", 0), "no frame was written directly"
    # Every writer that the burst started ended with its queue: 38 idle websockets, no greenlet writing.
    assert wait_for_writers(fanout_server, lambda count: count == 0) == 0


def test_a_reader_that_stops_reading_stalls_nobody_and_later_gets_everything(fanout_server, opened):
    PER_SENDER = 60
    room = fresh_room()
    listener = new_account(fanout_server)
    # A small receive buffer, and bodies whose JSON escapes take 12 bytes a character: megabytes
    # more than the kernel buffers hold, so the server's writes to this socket stop going through.
    stalled = RawReceiver(fanout_server.url, listener.token, room, receive_buffer=4096)
    opened.append(stalled)
    receivers = []
    for _ in range(9):
        receiver = RawReceiver(fanout_server.url, listener.token, room)
        opened.append(receiver)
        receivers.append(receiver.start())
    senders = sender_clients(fanout_server, room, 2, opened)
    padding = "\U0001f600" * 3900
    acked: list[list[int]] = [[] for _ in senders]

    def send_all(index: int, client: RecordingClient) -> None:
        for number in range(PER_SENDER):
            answer = client.call("message", {"room": room, "body": f"{index}-{number}-{padding}"})
            assert answer["ok"] is True, answer
            acked[index].append(answer["message"]["id"])

    started = time.monotonic()
    threads = [threading.Thread(target=send_all, args=(index, client)) for index, client in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(map(len, acked)) == 2 * PER_SENDER, "a sender was held up"

    deadline = time.monotonic() + DELIVERY_BOUND_SECONDS
    for receiver in receivers:
        receiver.wait_for(2 * PER_SENDER, deadline)
    took = time.monotonic() - started
    for receiver in receivers:
        assert_exactly_once_in_order(receiver.ids, acked)
    assert took < 60, f"the room took {took:.1f}s"
    # The stalled socket's writer waits for room in its buffer; nobody else's does.
    assert wait_for_writers(fanout_server, lambda count: count >= 1) == 1

    # The stalled reader now reads: everything, once, in order, its frames intact.
    stalled.start()
    stalled.wait_for(2 * PER_SENDER, time.monotonic() + DELIVERY_BOUND_SECONDS)
    assert_exactly_once_in_order(stalled.ids, acked)
    assert stalled.ids == receivers[0].ids
    assert wait_for_writers(fanout_server, lambda count: count == 0) == 0


def test_a_socket_upgrading_mid_broadcast_loses_and_reorders_nothing(fanout_server, opened):
    room = fresh_room()
    listener = new_account(fanout_server)
    http = requests.Session()
    opened.append(http)
    handshake = http.get(socketio_path(fanout_server.url, "polling"), timeout=WAIT_SECONDS)
    sid = json.loads(handshake.text[1:])["sid"]
    polling_url = f"{socketio_path(fanout_server.url, 'polling')}&sid={sid}"
    received: list[int] = []

    def handle(packet: str) -> None:
        message = message_of(packet)
        if message is not None and message["room"] == room:
            received.append(message["id"])

    def poll_until(matches) -> None:
        while True:
            response = http.get(polling_url, timeout=WAIT_SECONDS * 4)
            assert response.status_code == 200, response.text
            done = False
            for packet in response.text.split(RECORD_SEPARATOR):
                if packet == "2":
                    http.post(polling_url, data=b"3", timeout=WAIT_SECONDS)
                handle(packet)
                done = done or matches(packet)
            if done:
                return

    http.post(polling_url, data=("40" + json.dumps({"token": listener.token})).encode(), timeout=WAIT_SECONDS)
    poll_until(lambda packet: packet.startswith("40{"))
    http.post(polling_url, data=("421" + json.dumps(["join", {"room": room}])).encode(), timeout=WAIT_SECONDS)
    poll_until(lambda packet: packet.startswith("431"))
    others = [RawReceiver(fanout_server.url, listener.token, room).start() for _ in range(10)]
    opened.extend(others)
    senders = sender_clients(fanout_server, room, 3, opened)

    outcome: dict[str, list[list[int]]] = {}
    sending = threading.Thread(target=lambda: outcome.setdefault("acked", burst(fanout_server, room, senders, 100)))
    sending.start()
    # Upgrade once a part of the burst came by polling, while the rest is still being sent.
    poll_until(lambda packet: len(received) >= 40)
    ws_url = polling_url.replace("http://", "ws://", 1).replace("transport=polling", "transport=websocket")
    upgraded = websocket.create_connection(ws_url, timeout=WAIT_SECONDS, suppress_origin=True)
    opened.append(upgraded)
    upgraded.send("2probe")
    assert upgraded.recv() == "3probe"
    # The client pauses polling: the server answers the last poll at once (with a noop).
    poll_until(lambda packet: packet == "6")
    upgraded.send("5")
    sending.join(timeout=120)
    acked = outcome["acked"]
    assert sum(map(len, acked)) == 300
    assert len(received) < 300, "the upgrade came after the burst"

    deadline = time.monotonic() + DELIVERY_BOUND_SECONDS
    while len(received) < 300 and time.monotonic() < deadline:
        try:
            packet = upgraded.recv()
        except websocket.WebSocketTimeoutException:
            break
        if packet == "2":
            upgraded.send("3")
        handle(packet)
    assert_exactly_once_in_order(received, acked)
    for other in others:
        other.wait_for(300, deadline)
        assert other.ids == received


@pytest.mark.parametrize(
    ("owner", "name", "complaint"),
    [
        (socketio.Server, "_send_eio_packet", "missing Server._send_eio_packet"),
        (engineio.socket.Socket, "check_ping_timeout", "missing Socket.check_ping_timeout"),
    ],
)
def test_the_start_up_check_names_a_missing_internal(monkeypatch, owner, name, complaint):
    fanout.check_fanout_internals()  # the installed versions pass
    monkeypatch.delattr(owner, name)
    with pytest.raises(RuntimeError, match=re.escape(complaint)):
        fanout.check_fanout_internals()


def test_the_start_up_check_notices_a_new_websocket_handler(monkeypatch):
    def _websocket_handler(self, ws):
        return []

    monkeypatch.setattr(engineio.socket.Socket, "_websocket_handler", _websocket_handler)
    with pytest.raises(
        RuntimeError, match=r"Socket\._websocket_handler is not the one DirectWebSocket\.serve replaces"
    ):
        fanout.check_fanout_internals()


def test_the_app_does_not_start_when_an_internal_is_missing(monkeypatch):
    from app import create_app
    from app.config import TestingConfig

    monkeypatch.delattr(socketio.Server, "_send_eio_packet")
    with pytest.raises(RuntimeError, match="changed under direct writes"):
        create_app(TestingConfig)
    # Off, the layer and its check are left out.
    create_app(
        {**{k: getattr(TestingConfig, k) for k in dir(TestingConfig) if k.isupper()}, "FANOUT_DIRECT_WRITES": False}
    )
