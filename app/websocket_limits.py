"""A byte limit on incoming websocket messages, enforced before their payload is read."""

from __future__ import annotations

from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.websocket import Header, WebSocket


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

    def receive(self):
        try:
            return super().receive()
        except MessageTooLarge:
            # gevent-websocket's close() leaves the status code out of the close frame; the
            # peer sees a plain close, which is all the contract asks.
            self.close()
            return None

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


def limit_websocket_messages(wsgi_app, max_message_bytes: int):
    """WSGI middleware: websockets upgraded by gevent-websocket get ``max_message_bytes`` per message.

    It wraps the application rather than the gunicorn worker so that the limit holds
    however the server is started.
    """
    bounded_class = type(
        "BoundedWebSocket", (BoundedWebSocket,), {"__slots__": (), "max_message_bytes": max_message_bytes}
    )

    def middleware(environ, start_response):
        websocket = environ.get("wsgi.websocket")
        if type(websocket) is WebSocket:
            websocket.__class__ = bounded_class
        return wsgi_app(environ, start_response)

    return middleware
