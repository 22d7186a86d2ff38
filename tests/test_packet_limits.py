"""The websocket frame reader that bounds messages, fed hand-made frames, and its start-up checks."""

import io
import logging
import os
import struct

import pytest
from geventwebsocket.websocket import Header, WebSocket

from app import packet_limits
from app.packet_limits import check_internals, limit_packet_sizes, unmask
from app.sockets import common

LIMIT = 1000
MASK = b"\x37\xfa\x21\x3d"


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0) -> bytes:
    """One frame as a client sends it (RFC 6455 section 5.2), with the shortest length encoding."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


class Peer:
    """The two directions of a connection: what the client sent, and what the server wrote back."""

    def __init__(self, sent: bytes):
        self.incoming = io.BytesIO(sent)
        self.outgoing = io.BytesIO()
        self.read = self.incoming.read
        self.write = self.outgoing.write

    def frames_written(self) -> list[tuple[int, bytes]]:
        data, frames = self.outgoing.getvalue(), []
        while data:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            frames.append((opcode, data[2 : 2 + length]))
            data = data[2 + length :]
        return frames


class Handler:
    """What gevent-websocket's WebSocket asks of its handler: a logger, and the server's application."""

    logger = logging.getLogger("tests.websocket")

    class server:
        application = None


def bounded_socket(sent: bytes, limit: int = LIMIT) -> tuple[WebSocket, Peer]:
    """A stock gevent-websocket connection, put through the middleware as the server does."""
    peer = Peer(sent)
    websocket = WebSocket({}, peer, Handler())
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.websocket"])
        return []

    limit_packet_sizes(app, engineio_server=None, max_bytes=limit)({"wsgi.websocket": websocket}, None)
    assert seen == [websocket] and type(websocket).__name__ == "BoundedWebSocket"
    # The frame reader alone: the payloads here are not Engine.IO packets (that check has tests of its own).
    type(websocket).engineio_packets_only = False
    return websocket, peer


def sent_close(peer: Peer) -> bool:
    """Whether the server sent one close frame (gevent-websocket sends it without a status code)."""
    return [opcode for opcode, _ in peer.frames_written()] == [0x8]


@pytest.mark.parametrize("mask", [MASK, None], ids=["masked", "unmasked"])
@pytest.mark.parametrize("length", [0, 1, 125, 126, 300, 65535, 65536, 70000], ids=lambda n: f"{n}B")
@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
def test_a_message_within_the_limit_is_read_whole(mask, length, opcode):
    payload = bytes((i * 7 + 3) % 64 + 32 for i in range(length))  # printable ASCII, so valid UTF-8
    websocket, peer = bounded_socket(frame(payload, opcode=opcode, mask=mask) + frame(b"next"), limit=70000)
    received = websocket.receive()
    if opcode == 0x1:
        assert received == payload.decode()
    else:
        assert bytes(received) == payload
    assert websocket.receive() == "next"
    assert not websocket.closed


@pytest.mark.parametrize("length", [LIMIT + 1, 70000, 2**40], ids=["16-bit", "64-bit", "a terabyte"])
def test_a_message_announced_over_the_limit_closes_without_reading_its_payload(length):
    header = frame(b"", mask=None)[:1]
    if length < 1 << 16:
        header += struct.pack("!BH", 0x80 | 126, length)
    else:
        header += struct.pack("!BQ", 0x80 | 127, length)
    sent = header + MASK + b"x" * 5000
    websocket, peer = bounded_socket(sent)
    assert websocket.receive() is None
    assert websocket.closed
    assert peer.incoming.tell() == len(header) + len(MASK)  # not one payload byte was read
    assert sent_close(peer)


def test_exactly_the_limit_is_allowed_and_one_more_byte_is_not():
    websocket, _ = bounded_socket(frame(b"a" * LIMIT))
    assert websocket.receive() == "a" * LIMIT
    websocket, _ = bounded_socket(frame(b"a" * (LIMIT + 1)))
    assert websocket.receive() is None and websocket.closed


def test_fragments_are_joined_and_control_frames_between_them_are_answered():
    sent = (
        frame(b"hel", fin=False)
        + frame(b"ping!", opcode=0x9)
        + frame(b"lo ", opcode=0x0, fin=False, mask=None)
        + frame("wörld".encode(), opcode=0x0)
    )
    websocket, peer = bounded_socket(sent)
    assert websocket.receive() == "hello wörld"
    assert peer.frames_written() == [(0xA, b"ping!")]


def test_fragments_that_together_exceed_the_limit_close_the_socket():
    half = b"a" * (LIMIT // 2 + 1)
    sent = frame(half, fin=False) + frame(half, opcode=0x0)
    websocket, peer = bounded_socket(sent)
    assert websocket.receive() is None
    assert websocket.closed
    assert peer.incoming.tell() < len(sent)  # the second fragment's payload stayed unread


def test_a_multibyte_character_split_across_fragments_is_valid():
    encoded = "é".encode()
    websocket, _ = bounded_socket(frame(encoded[:1], fin=False) + frame(encoded[1:], opcode=0x0))
    assert websocket.receive() == "é"


@pytest.mark.parametrize(
    "sent",
    [
        frame(b"\xff\xfe"),
        frame(b"hi", rsv=0x40),
        frame(b"orphan", opcode=0x0),
        frame(b"a", fin=False) + frame(b"b"),
        frame(b"x", opcode=0x3),
        frame(b"hello")[:-2],
    ],
    ids=["bad utf-8", "reserved bit", "orphan continuation", "interleaved", "reserved opcode", "truncated"],
)
def test_protocol_violations_close_the_socket(sent):
    websocket, peer = bounded_socket(sent)
    assert websocket.receive() is None
    assert websocket.closed
    assert sent_close(peer)


def test_a_close_frame_ends_the_connection():
    websocket, peer = bounded_socket(frame(struct.pack("!H", 1000) + b"bye", opcode=0x8))
    assert websocket.receive() is None
    assert websocket.closed
    assert sent_close(peer)


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 1000, 4099])
def test_unmask_is_the_rfc_xor(length):
    payload = os.urandom(length)
    expected = bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))
    assert unmask(payload, MASK) == expected
    assert unmask(expected, MASK) == payload


def test_stock_header_decoding_matches_the_hand_made_frames():
    """The reader takes lengths and masks from gevent-websocket's Header: check it reads ours as written."""
    for length in (5, 300, 70000):
        header = Header.decode_header(io.BytesIO(frame(b"a" * length)))
        assert (header.fin, header.opcode, header.length, bytes(header.mask)) == (True, 1, length, MASK)


# -- start-up checks of the library internals the app relies on ------------------------


def test_the_installed_gevent_websocket_has_what_the_limit_needs():
    check_internals()


@pytest.mark.parametrize(
    ("owner", "name"),
    [(WebSocket, "handle_ping"), (WebSocket, "raw_read"), (WebSocket, "OPCODE_TEXT"), (Header, "decode_header")],
)
def test_a_missing_internal_stops_the_start_with_its_name(monkeypatch, owner, name):
    monkeypatch.delattr(owner, name)
    with pytest.raises(RuntimeError, match=rf"gevent-websocket changed.*{owner.__name__}\.{name}"):
        check_internals()


def test_a_receive_that_no_longer_reads_through_read_message_stops_the_start(monkeypatch):
    monkeypatch.setattr(WebSocket, "receive", lambda self: self.read_frame())
    with pytest.raises(RuntimeError, match="read_message"):
        check_internals()


def test_a_websocket_that_can_no_longer_be_swapped_in_place_stops_the_start(monkeypatch):
    class Rewritten:  # a new layout: instances with a __dict__
        def receive(self):
            return self.read_message()

    for name in packet_limits.WEBSOCKET_INTERNALS:
        if not hasattr(Rewritten, name):
            setattr(Rewritten, name, getattr(WebSocket, name, None))
    monkeypatch.setattr(packet_limits, "WebSocket", Rewritten)
    with pytest.raises(RuntimeError, match="can no longer become a BoundedWebSocket"):
        check_internals()


def test_flask_login_keeps_the_user_id_where_connecting_user_reads_it(app):
    common.check_login_session_key(app)


def test_a_flask_login_that_moved_the_user_id_stops_the_start(app, monkeypatch):
    monkeypatch.setattr(common, "LOGIN_SESSION_USER_ID", "_moved")
    with pytest.raises(RuntimeError, match="Flask-Login no longer stores"):
        common.check_login_session_key(app)


@pytest.mark.parametrize(
    "body",
    [b"", b"x", b"4x\x1e", b"\x1e", b"\xff\xfe", b"bnot base64!", "\x1e".join(["3"] * 17).encode(), b"d=42"],
    ids=repr,
)
def test_a_long_polling_body_that_is_no_engineio_payload_is_named(body):
    assert packet_limits.malformed_poll_payload(body) is not None


@pytest.mark.parametrize("body", [b"3", b'40{"token":"t"}', b"4x", b'42["who",{}]\x1e3', b"bAAEC", '42["ü"]'.encode()])
def test_an_engineio_payload_passes_the_long_polling_check(body):
    """Malformed Socket.IO inside a well-formed Engine.IO packet (``4x``) is the socket guard's to answer."""
    assert packet_limits.malformed_poll_payload(body) is None
