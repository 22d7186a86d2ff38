"""Engine.IO spoken by hand over websocket-client and requests, for tests that need exact packet sizes."""

from __future__ import annotations

import json

import requests
import websocket

RECORD_SEPARATOR = "\x1e"  # between packets of one long-polling payload
WAIT_SECONDS = 10


def socketio_path(base_url: str, transport: str) -> str:
    return f"{base_url}/socket.io/?EIO=4&transport={transport}"


def event_packet(event: str, payload: dict, *, ack_id: int, size: int) -> str:
    """An Engine.IO message carrying a Socket.IO event, padded through ``payload["body"]`` to ``size`` bytes.

    The body is padded with the single character that ``payload["body"]`` holds, so the
    caller chooses between one- and multi-byte UTF-8.
    """
    pad = payload["body"]
    head = f"42{ack_id}" + json.dumps([event, {**payload, "body": ""}], ensure_ascii=False)
    # The body sits last in the JSON, so the padding goes just before its closing quote.
    assert head.endswith('""}]')
    free_bytes = size - len(head.encode())
    pad_bytes = len(pad.encode())
    assert free_bytes % pad_bytes == 0, "choose a size the padding character divides"
    packet = head[:-3] + pad * (free_bytes // pad_bytes) + head[-3:]
    assert len(packet.encode()) == size
    return packet


def ack_of(packet: str, ack_id: int):
    """The acknowledgement payload if ``packet`` answers ``ack_id`` on `/`, else None."""
    prefix = f"43{ack_id}"
    if packet.startswith(prefix):
        return json.loads(packet[len(prefix) :])[0]
    return None


class WebSocketSession:
    """One Engine.IO connection over a raw websocket, signed in on `/` with a token."""

    def __init__(self, base_url: str, token: str):
        url = socketio_path(base_url, "websocket").replace("http://", "ws://", 1)
        self.ws = websocket.create_connection(url, timeout=WAIT_SECONDS, suppress_origin=True)
        assert self.ws.recv().startswith("0{")
        self.ws.send("40" + json.dumps({"token": token}))
        self.read_until(lambda packet: packet.startswith("40{"))

    def read_until(self, matches):
        while True:
            packet = self.ws.recv()
            if packet == "2":  # the server's heartbeat ping
                self.ws.send("3")
                continue
            if matches(packet):
                return packet

    def call(self, packet: str, ack_id: int):
        self.ws.send(packet)
        return ack_of(self.read_until(lambda answer: ack_of(answer, ack_id) is not None), ack_id)

    def closed_by_server(self, packet: str) -> bool:
        """Send ``packet`` and report whether the server then closed the connection."""
        try:
            self.ws.send(packet)
            while True:
                if self.ws.recv() in ("", None):
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True
        except websocket.WebSocketTimeoutException:
            return False

    def close(self) -> None:
        self.ws.close()
        # close() skips a connection the server already ended; shutdown() releases its socket anyway.
        self.ws.shutdown()


class PollingSession:
    """One Engine.IO connection over HTTP long-polling, signed in on `/` with a token."""

    def __init__(self, base_url: str, token: str):
        self.http = requests.Session()
        handshake = self.http.get(socketio_path(base_url, "polling"), timeout=WAIT_SECONDS)
        assert handshake.status_code == 200 and handshake.text.startswith("0{"), handshake.text
        self.sid = json.loads(handshake.text[1:])["sid"]
        self.url = f"{socketio_path(base_url, 'polling')}&sid={self.sid}"
        assert self.post("40" + json.dumps({"token": token})).status_code == 200
        self.read_until(lambda packet: packet.startswith("40{"))

    def post(self, payload: str) -> requests.Response:
        return self.http.post(self.url, data=payload.encode(), timeout=WAIT_SECONDS)

    def poll(self) -> requests.Response:
        return self.http.get(self.url, timeout=WAIT_SECONDS * 4)

    def read_until(self, matches):
        while True:
            response = self.poll()
            assert response.status_code == 200, response.text
            for packet in response.text.split(RECORD_SEPARATOR):
                if packet == "2":
                    self.post("3")
                elif matches(packet):
                    return packet

    def call(self, packet: str, ack_id: int):
        assert self.post(packet).status_code == 200
        return ack_of(self.read_until(lambda answer: ack_of(answer, ack_id) is not None), ack_id)
