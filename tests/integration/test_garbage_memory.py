"""Garbage repeated against a real server: only the sender's connection ends, and memory and logs stay bounded.

The issue's measurements: after `4599999999-["who",{}]` every later frame was kept as a binary
attachment (200 frames of 1 MB took the worker from 87 to 278 MB, freed only on disconnect), and
`4x` wrote ~1.6 KB of traceback per packet, twice.
"""

from __future__ import annotations

import json

import pytest
import requests
import websocket

from tests.integration.engineio_wire import (
    RECORD_SEPARATOR,
    WAIT_SECONDS,
    WebSocketSession,
    ack_of,
    socketio_path,
)

pytestmark = pytest.mark.integration

WHO = '["who",{}]'
MEGABYTE = 1_000_000
# Under the 1,000,000-byte packet limit, with room for the frame's own header.
FRAME_BYTES = MEGABYTE - 1024
# Far below the 191 MB the lying header cost before, and well above the allocator's own noise.
MAX_RSS_GROWTH_KB = 48 * 1024
MALFORMED = [
    "4x",
    "x",
    "4",
    "",
    "4599999999-" + WHO,
    "452-" + WHO,
    "42-1" + WHO,
    '421["who",',
    "42" + "9" * 301 + WHO,
    "44" + WHO,
]


def ws_url(base_url: str) -> str:
    return socketio_path(base_url, "websocket").replace("http://", "ws://", 1)


def bare_websocket(base_url: str) -> websocket.WebSocket:
    """An Engine.IO websocket with no account and no namespace: just the open packet."""
    ws = websocket.create_connection(ws_url(base_url), timeout=WAIT_SECONDS, suppress_origin=True)
    assert ws.recv().startswith("0{")
    return ws


def ended_by_server(ws: websocket.WebSocket) -> bool:
    try:
        while True:
            if ws.recv() in ("", None):
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True
    except websocket.WebSocketTimeoutException:
        return False
    finally:
        ws.shutdown()


def polling_refuses(base_url: str, payload: str) -> bool:
    """A bare long-polling session posts ``payload``; True once the server has ended that session."""
    with requests.Session() as http:
        handshake = http.get(socketio_path(base_url, "polling"), timeout=WAIT_SECONDS)
        assert handshake.status_code == 200, handshake.text
        url = f"{socketio_path(base_url, 'polling')}&sid={json.loads(handshake.text[1:])['sid']}"
        if http.post(url, data=payload.encode(), timeout=WAIT_SECONDS).status_code == 400:
            return True
        answer = http.get(url, timeout=WAIT_SECONDS)
        if answer.status_code == 400:
            return True
        if "1" not in answer.text.split(RECORD_SEPARATOR):
            return False
        return http.get(url, timeout=WAIT_SECONDS).status_code == 400


def still_answers(bystander: WebSocketSession, ack_id: int) -> bool:
    return bystander.call(f"42{ack_id}{WHO}", ack_id=ack_id)["ok"] is True


@pytest.fixture
def bystander(account, chat_server):
    session = WebSocketSession(chat_server.url, account().token)
    yield session
    session.close()


def test_a_thousand_malformed_packets_over_both_transports_end_only_their_connections(chat_server, bystander):
    # Warm up every path once, so the baseline includes what the first refusal loads.
    assert ended_by_server(sent(bare_websocket(chat_server.url), "4x"))
    assert polling_refuses(chat_server.url, "4x")
    rss_before, log_before = chat_server.worker_rss_kb(), chat_server.log_text()

    not_ended = []
    for repeat in range(1000):
        packet = MALFORMED[repeat % len(MALFORMED)]
        if repeat % 2:
            if not polling_refuses(chat_server.url, packet):
                not_ended.append(("polling", packet))
        elif not ended_by_server(sent(bare_websocket(chat_server.url), packet)):
            not_ended.append(("websocket", packet))
        if repeat % 100 == 99:
            assert still_answers(bystander, repeat), repeat

    assert not_ended == []
    assert still_answers(bystander, 1)
    logged = chat_server.log_text()[len(log_before) :]
    assert "Traceback" not in logged
    # The guard's lines are rate-limited (ten a minute); nothing else is written per packet.
    assert len(logged.splitlines()) <= 40, logged[-4000:]
    assert len(logged) <= 16 * 1024
    growth = chat_server.worker_rss_kb() - rss_before
    assert growth <= MAX_RSS_GROWTH_KB, f"the worker grew by {growth} KiB"


def sent(ws: websocket.WebSocket, packet: str) -> websocket.WebSocket:
    try:
        ws.send(packet)
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass
    return ws


def test_megabyte_attachments_after_a_lying_binary_header_are_never_kept(chat_server, account, bystander):
    frame = b"\x00" * FRAME_BYTES
    rss_before = chat_server.worker_rss_kb()

    # The attack: 200 frames of 1 MB after one header announcing 9,999,999 attachments,
    # over 20 connections. The header closes each connection; what was already in flight is dropped.
    pushed = 0
    for _ in range(20):
        liar = WebSocketSession(chat_server.url, account().token)
        liar.ws.send("4599999999-" + WHO)
        for _ in range(10):
            try:
                liar.ws.send_binary(frame)
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break
            pushed += 1
        assert ended_by_server(liar.ws)

    # The shape the contract allows: one announced attachment per event, 200 times on one socket,
    # each answered and let go.
    honest = WebSocketSession(chat_server.url, account().token)
    for ack_id in range(1, 201):
        honest.ws.send(f'451-{ack_id}["who",{{"room":{{"_placeholder":true,"num":0}}}}]')
        honest.ws.send_binary(frame)
        answer = ack_of(honest.read_until(lambda packet, ack_id=ack_id: ack_of(packet, ack_id) is not None), ack_id)
        assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    honest.close()

    assert still_answers(bystander, 7)
    growth = chat_server.worker_rss_kb() - rss_before
    assert growth <= MAX_RSS_GROWTH_KB, f"the worker grew by {growth} KiB after {pushed + 200} MB were sent"
