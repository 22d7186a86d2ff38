"""Flood budgets against a real server: a flooding socket is refused and closed, everyone else stays served."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket

from tests.integration.engineio_wire import WebSocketSession, ack_of

pytestmark = pytest.mark.integration

# Far above what a round trip takes on an idle machine, far below the tens of seconds one
# flooding socket used to cost everyone.
ROUND_TRIP_BOUND_SECONDS = 1.5


class Flooder(threading.Thread):
    """Sends ``packet`` as fast as it can over one raw websocket, collecting every answer, until closed."""

    def __init__(self, session: WebSocketSession, packet: str, seconds: float):
        super().__init__(daemon=True)
        self.session = session
        self.packet = packet
        self.seconds = seconds
        self.sent = 0
        self.closed_by_server = False

    def run(self):
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                self.session.ws.send(self.packet.replace("{n}", str(self.sent % 1000 + 1)))
            except websocket.WebSocketTimeoutException:
                continue  # the server reads this socket no faster than it serves it
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.closed_by_server = True
                return
            self.sent += 1


def answers_of(session: WebSocketSession, seconds: float) -> list[str]:
    """Every packet the server sends within ``seconds`` (or until it closes the connection)."""
    received = []
    session.ws.settimeout(0.5)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                packet = session.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not packet:
                break
            received.append(packet)
    except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
        received.append("<closed>")
    return received


def who_round_trips(session: WebSocketSession, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        answer = session.call(f'42{n + 1}["who",{{"room":"general"}}]', ack_id=n + 1)
        times.append(time.perf_counter() - started)
        assert answer["ok"] is True, answer
    return times


@pytest.mark.parametrize("event", ['["join",{"room":"general"}]', '["typing",{"room":"general","active":true}]'])
def test_a_flooding_socket_is_refused_and_closed_while_others_are_served(event, account, chat_server):
    flooder = WebSocketSession(chat_server.url, account().token)
    bystander = WebSocketSession(chat_server.url, account().token)
    try:
        flood = Flooder(flooder, "42{n}" + event, seconds=4)
        collected: list[str] = []
        reader = threading.Thread(target=lambda: collected.extend(answers_of(flooder, 6)), daemon=True)
        reader.start()
        flood.start()
        time.sleep(0.2)

        round_trips = who_round_trips(bystander, 30)
        health_started = time.perf_counter()
        assert requests.get(f"{chat_server.url}/healthz", timeout=10).status_code == 200
        health_took = time.perf_counter() - health_started
        flood.join(10)
        reader.join(10)

        refusals = [
            answer
            for packet in collected
            if packet.startswith("43")
            for answer in [json.loads(packet[packet.index("[") :])[0]]
            if answer.get("ok") is False
        ]
        assert refusals, collected[:5]
        assert {answer["error"]["code"] for answer in refusals} == {"rate_limited"}
        assert collected[-1] == "<closed>" or flood.closed_by_server, "the flooder was never disconnected"
        worst = sorted(round_trips)[-1]
        assert worst < ROUND_TRIP_BOUND_SECONDS, round_trips
        assert health_took < ROUND_TRIP_BOUND_SECONDS
        assert who_round_trips(bystander, 3)
    finally:
        flooder.close()
        bystander.close()


def test_ordinary_use_stays_within_the_budgets(account, chat_server):
    """A client that joins forty times at once, then types a lot, is never refused."""
    alice = WebSocketSession(chat_server.url, account().token)
    try:
        for n in range(40):
            alice.ws.send(f'42{n + 1}["join",{{"room":"general"}}]')
        answers = [ack_of(alice.read_until(lambda p, n=n: ack_of(p, n + 1) is not None), n + 1) for n in range(40)]
        assert all(answer["ok"] for answer in answers), [a for a in answers if not a["ok"]][:3]
        for n in range(60):
            answer = alice.call(f'42{100 + n}["typing",{{"room":"general","active":true}}]', ack_id=100 + n)
            assert answer["ok"] is True, answer
    finally:
        alice.close()
