"""Engine.IO sessions nobody signs in on: capped per address and closed after the connect timeout."""

from __future__ import annotations

import json
import time

import pytest
import requests
import websocket

from tests.integration.conftest import create_account
from tests.integration.engineio_wire import RECORD_SEPARATOR, socketio_path

pytestmark = pytest.mark.integration


def handshake(server_url: str) -> requests.Response:
    return requests.get(socketio_path(server_url, "polling"), timeout=10)


def session_url(server_url: str, response: requests.Response) -> str:
    sid = json.loads(response.text[1:])["sid"]
    return f"{socketio_path(server_url, 'polling')}&sid={sid}"


@pytest.fixture
def make_capped_server(live_server_factory):
    def make(connect_timeout: float):
        env = {"ANONYMOUS_HANDSHAKES_PER_ADDRESS": "5", "SOCKET_CONNECT_TIMEOUT_SECONDS": str(connect_timeout)}
        return live_server_factory(env=env)

    return make


def test_anonymous_sessions_are_capped_per_address_and_signed_in_ones_do_not_count(make_capped_server):
    capped_server = make_capped_server(60)
    opened = [handshake(capped_server.url) for _ in range(5)]
    assert [response.status_code for response in opened] == [200] * 5

    refused = handshake(capped_server.url)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0

    # Signing in on one of them frees its place.
    token = create_account(capped_server).token
    url = session_url(capped_server.url, opened[0])
    assert requests.post(url, data="40" + json.dumps({"token": token}), timeout=10).status_code == 200
    assert any(packet.startswith("40{") for packet in requests.get(url, timeout=10).text.split(RECORD_SEPARATOR))
    assert handshake(capped_server.url).status_code == 200


def test_a_session_nobody_signs_in_on_is_closed_after_the_connect_timeout(make_capped_server):
    capped_server = make_capped_server(4)
    idle = session_url(capped_server.url, handshake(capped_server.url))
    for _ in range(4):
        handshake(capped_server.url)
    assert handshake(capped_server.url).status_code == 429

    time.sleep(5)

    answer = requests.get(idle, timeout=10)
    assert answer.status_code == 400 or "1" in answer.text.split(RECORD_SEPARATOR), answer.text
    assert handshake(capped_server.url).status_code == 200


def test_the_connect_timeout_closes_an_anonymous_websocket_and_spares_a_signed_in_one(make_capped_server):
    capped_server = make_capped_server(2)
    url = socketio_path(capped_server.url, "websocket").replace("http://", "ws://", 1)
    token = create_account(capped_server).token
    anonymous = websocket.create_connection(url, timeout=10, suppress_origin=True)
    signed_in = websocket.create_connection(url, timeout=10, suppress_origin=True)
    for ws in (anonymous, signed_in):
        assert ws.recv().startswith("0{")
    signed_in.send("40" + json.dumps({"token": token}))
    while not signed_in.recv().startswith("40{"):
        pass

    time.sleep(3.5)

    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:  # pings (none in 2 s at the default interval), then the close
            anonymous.recv()
    signed_in.send('421["who",{}]')
    while not (answer := signed_in.recv()).startswith("431"):
        pass
    assert json.loads(answer[3:])[0]["ok"] is True
    signed_in.close()
