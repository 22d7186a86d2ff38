"""The 1 MB limit on incoming Engine.IO packets, enforced before their bytes are read, on both transports."""

from __future__ import annotations

import base64
import binascii
import io
import logging
from urllib.parse import parse_qs

import gevent
from engineio.payload import Payload
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.websocket import Header, WebSocket

from app.socket_guard import log_budget

log = logging.getLogger("switchboard.sockets.guard")

# open, close, ping, pong, message, upgrade, noop
ENGINEIO_PACKET_TYPES = frozenset("0123456")
RECORD_SEPARATOR = "\x1e"  # between the packets of one long-polling payload


class MessageTooLarge(Exception):
    """A websocket message announced more bytes than the limit allows."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``mask``, as one big-integer operation in C."""
    if not mask or not payload:
        return bytes(payload)
    length = len(payload)
    key = (bytes(mask) * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


class BoundedWebSocket(WebSocket):
    """gevent-websocket's connection, refusing a message once its frame headers announce too many bytes.

    The stock reader buffers a frame of whatever length its header claims, then unmasks and
    UTF-8-validates it byte by byte in Python. That holds the whole gevent worker, and so
    every other connection on it, for about half a second per megabyte before Engine.IO
    can even see the size. Here the size is checked from the headers, the payload is only
    read when it fits, and unmasking and decoding run in C.
    """

    # No new slots: instances of the stock class are switched to this one in place.
    __slots__ = ()

    max_message_bytes = 1_000_000
    # Text that is no Engine.IO packet closes the connection (off only where the frame reader alone is tested).
    engineio_packets_only = True

    def receive(self):
        # Let every other greenlet run between two messages of one connection, so a client
        # that sends as fast as it can is served in turn with the others, not before them.
        gevent.sleep(0)
        try:
            message = super().receive()
        except MessageTooLarge:
            # gevent-websocket's close() leaves the status code out of the close frame; the
            # peer sees a plain close, which is all the contract asks.
            self.close()
            return None
        if (
            self.engineio_packets_only
            and isinstance(message, str)
            and (not message or message[0] not in ENGINEIO_PACKET_TYPES)
        ):
            # Engine.IO would raise on it outside any handler and log a traceback per message.
            if log_budget.allow():
                log.warning("closing a websocket that sent %r, which is no Engine.IO packet", message[:40])
            self.close()
            return None
        return message

    def read_message(self):
        opcode = None
        message = bytearray()
        while True:
            header = Header.decode_header(self.stream)
            if header.flags:
                raise ProtocolError(f"reserved bits set in {header!r}")
            if header.opcode in (self.OPCODE_CLOSE, self.OPCODE_PING, self.OPCODE_PONG):
                payload = self._read_payload(header)
                if header.opcode == self.OPCODE_CLOSE:
                    self.handle_close(header, payload)
                    return None
                if header.opcode == self.OPCODE_PING:
                    self.handle_ping(header, payload)
                continue
            if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode is not None:
                    raise ProtocolError("a new message started inside a fragmented one")
                opcode = header.opcode
            elif header.opcode != self.OPCODE_CONTINUATION or opcode is None:
                raise ProtocolError(f"unexpected frame {header!r}")
            if len(message) + header.length > self.max_message_bytes:
                raise MessageTooLarge(f"more than {self.max_message_bytes} bytes")
            message += self._read_payload(header)
            if header.fin:
                break
        if opcode == self.OPCODE_TEXT:
            # Strict decoding is the UTF-8 check: invalid text closes the socket with 1007.
            return self._decode_bytes(bytes(message))
        return message

    def _read_payload(self, header: Header) -> bytes:
        if not header.length:
            return b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise ProtocolError("unexpected end of stream inside a frame")
        return unmask(payload, header.mask)


def content_length(environ: dict) -> int:
    declared = environ.get("CONTENT_LENGTH") or "0"
    return int(declared) if declared.isdigit() else 0


def refuse_oversized_poll(engineio_server, environ: dict, start_response):
    """Answer a long-polling POST over ``max_bytes`` with 400 and close its Engine.IO session at once.

    Engine.IO refuses such a POST too, but closes the session by waiting for the close
    packet to be fetched by a GET; a client with no GET waiting then never gets an answer
    and its request holds a worker connection for good.
    """
    return end_poll_session(engineio_server, environ, start_response, b"packet too large")


def end_poll_session(engineio_server, environ: dict, start_response, explanation: bytes):
    """400 for this POST, and its Engine.IO session closed at once (the next GET gets 400 too)."""
    sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
    session = engineio_server.sockets.get(sid) if sid else None
    if session is not None and not session.closed:
        session.close(wait=False, reason=engineio_server.reason.TRANSPORT_ERROR)
        engineio_server.sockets.pop(sid, None)
    start_response("400 BAD REQUEST", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [explanation]


def malformed_poll_payload(body: bytes) -> str | None:
    """Why a long-polling POST body is no Engine.IO payload, or None when it is one.

    Engine.IO decodes a POST outside any handler: text that is no payload (``x``, invalid
    UTF-8, an empty packet, bad base64, too many packets) became a logged traceback per
    request and a ``200``, leaving the session open. Checked here as Engine.IO decodes it.
    """
    if not body:
        return "an empty payload"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "a payload that is not UTF-8"
    packets = text.split(RECORD_SEPARATOR)
    if len(packets) > Payload.max_decode_packets:
        return f"more than {Payload.max_decode_packets} packets in one payload"
    for packet in packets:
        if packet[:1] == "b":
            try:
                base64.b64decode(packet[1:])
            except binascii.Error:
                return "a binary packet that is not base64"
        elif not packet or packet[0] not in ENGINEIO_PACKET_TYPES:
            return f"{packet[:40]!r}, which is no Engine.IO packet"
    return None


def checked_poll(engineio_server, environ: dict, start_response, wsgi_app):
    """Pass a well-formed long-polling POST on (its body put back), refuse any other."""
    body = environ["wsgi.input"].read(content_length(environ))
    problem = malformed_poll_payload(body)
    if problem is not None:
        if log_budget.allow():
            log.warning("closing a long-polling session that posted %s", problem)
        return end_poll_session(engineio_server, environ, start_response, b"not an Engine.IO payload")
    environ["wsgi.input"] = io.BytesIO(body)
    return wsgi_app(environ, start_response)


def refuse_handshake(environ, start_response):
    """Too many unsigned-in sessions from this address: 429, and a websocket already upgraded is closed."""
    websocket = environ.get("wsgi.websocket")
    if websocket is not None:
        websocket.close()
        return []
    start_response(
        "429 TOO MANY REQUESTS",
        [("Content-Type", "text/plain"), ("Retry-After", "30"), ("Connection", "close")],
    )
    return [b"too many connections from this address"]


def is_handshake(environ, socketio_path: str) -> bool:
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and environ.get("PATH_INFO", "").rstrip("/") == socketio_path
        and "sid" not in parse_qs(environ.get("QUERY_STRING", ""))
    )


def limit_packet_sizes(
    wsgi_app, engineio_server, max_bytes: int, socketio_path: str = "/socket.io", admits_handshake=None
):
    """WSGI middleware: no Engine.IO packet over ``max_bytes`` is read, over websocket or long-polling.

    It wraps the application rather than the gunicorn worker so that the limit holds
    however the server is started. ``admits_handshake(environ)``, when given, decides
    whether a new Engine.IO session may open.
    """
    bounded_class = type("BoundedWebSocket", (BoundedWebSocket,), {"__slots__": (), "max_message_bytes": max_bytes})

    def middleware(environ, start_response):
        if admits_handshake is not None and is_handshake(environ, socketio_path) and not admits_handshake(environ):
            return refuse_handshake(environ, start_response)
        websocket = environ.get("wsgi.websocket")
        if type(websocket) is WebSocket:
            websocket.__class__ = bounded_class
        elif environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").rstrip("/") == socketio_path:
            if content_length(environ) > max_bytes:
                return refuse_oversized_poll(engineio_server, environ, start_response)
            return checked_poll(engineio_server, environ, start_response, wsgi_app)
        return wsgi_app(environ, start_response)

    return middleware


# What BoundedWebSocket takes from gevent-websocket beyond its public surface.
WEBSOCKET_INTERNALS = (
    "__init__",
    "receive",
    "close",
    "handle_close",
    "handle_ping",
    "_decode_bytes",
    "stream",
    "raw_read",
    "OPCODE_CONTINUATION",
    "OPCODE_TEXT",
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_PING",
    "OPCODE_PONG",
)
HEADER_INTERNALS = ("decode_header", "fin", "opcode", "flags", "length", "mask")


def check_internals() -> None:
    """Fail at start-up, naming what is missing, if gevent-websocket no longer has what the size limit relies on.

    The limit swaps each connection's class for ``BoundedWebSocket`` and replaces the
    stock ``read_message``; an upgrade that renames a method, changes the slots or stops
    reading through ``read_message`` would otherwise disable the limit without a word.
    """
    problems = [f"missing WebSocket.{name}" for name in WEBSOCKET_INTERNALS if not hasattr(WebSocket, name)]
    problems += [f"missing Header.{name}" for name in HEADER_INTERNALS if not hasattr(Header, name)]
    receive_code = getattr(getattr(WebSocket, "receive", None), "__code__", None)
    if receive_code is None or "read_message" not in receive_code.co_names:
        problems.append("WebSocket.receive no longer reads through read_message")
    try:
        # A connection's class is swapped in place, which needs the same instance layout.
        object.__new__(WebSocket).__class__ = BoundedWebSocket
    except TypeError as error:
        problems.append(f"a WebSocket can no longer become a BoundedWebSocket ({error})")
    if problems:
        raise RuntimeError(
            "gevent-websocket changed under the websocket size limit (app/packet_limits.py): "
            + "; ".join(problems)
            + ". Pin the version in requirements.txt or update BoundedWebSocket."
        )
