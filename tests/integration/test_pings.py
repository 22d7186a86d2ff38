"""Engine.IO heartbeats, sent from a timer per socket (app/sockets/pings.py): kept up, and ending silent clients."""

from __future__ import annotations

import json
import time

import pytest
import websocket

from tests.integration.engineio_wire import socketio_path
from tests.support import api

pytestmark = pytest.mark.integration

INTERVAL, TIMEOUT = 1.0, 1.0


@pytest.fixture
def server(live_server_factory):
    return live_server_factory(
        env={"SOCKET_PING_INTERVAL_SECONDS": str(INTERVAL), "SOCKET_PING_TIMEOUT_SECONDS": str(TIMEOUT)}
    )


def signed_in_websocket(server) -> websocket.WebSocket:
    token = api.register_and_token(server.url, api.new_username("pinged"), "correct horse battery")["token"]
    ws = websocket.create_connection(
        socketio_path(server.url, "websocket").replace("http://", "ws://", 1), timeout=10, suppress_origin=True
    )
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token}))
    while not ws.recv().startswith("40{"):
        pass
    return ws


def test_an_answering_websocket_is_pinged_every_interval_and_stays(server):
    ws = signed_in_websocket(server)
    pings: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 6 * INTERVAL:
        packet = ws.recv()
        if packet == "2":
            pings.append(time.monotonic())
            ws.send("3")
    assert len(pings) >= 4, pings
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:], strict=False)]
    assert all(0.5 * INTERVAL < gap < 3 * INTERVAL for gap in gaps), gaps
    assert ws.connected
    ws.close()


def test_a_websocket_that_stops_answering_pings_is_closed(server):
    ws = signed_in_websocket(server)
    while ws.recv() != "2":
        pass
    ws.send("3")
    silent_since = time.monotonic()
    closed = False
    try:
        while time.monotonic() - silent_since < 10 * (INTERVAL + TIMEOUT):
            if ws.recv() in ("", None):
                closed = True
                break
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        closed = True
    finally_closed_after = time.monotonic() - silent_since
    ws.shutdown()
    assert closed, "the server kept a socket that stopped answering pings"
    assert finally_closed_after < 10 * (INTERVAL + TIMEOUT)
