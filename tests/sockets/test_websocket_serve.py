"""``DirectWebSocket.serve``'s read loop (app/sockets/fanout.py): a Socket.IO CONNECT or DISCONNECT is
handled in a greenlet of its own, and the reader waits for it.

The websocket and the session are stand-ins holding what ``serve`` reads: the frames a client
sent, and a session whose ``receive`` records which greenlet handled each packet, and when.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import gevent
import greenlet
import pytest

from app.sockets import fanout


class Session:
    """What ``serve`` reads of an Engine.IO session; ``receive`` records each packet it is given."""

    def __init__(self, on_receive=None) -> None:
        self.connected = False
        self.upgraded = False
        self.closed = False
        self.queue = fanout.SessionQueue()
        self.sid = "s1"
        self.server = SimpleNamespace(
            logger=logging.getLogger("tests.websocket_serve"),
            max_http_buffer_size=1_000_000,
            reason=SimpleNamespace(TRANSPORT_CLOSE="transport close"),
        )
        self.handled: list[tuple[str, str, greenlet.greenlet]] = []
        self.on_receive = on_receive
        self.closed_with: dict | None = None

    def receive(self, pkt) -> None:
        self.handled.append(("start", pkt.encode(), greenlet.getcurrent()))
        if self.on_receive is not None:
            self.on_receive(pkt)
        self.handled.append(("end", pkt.encode(), greenlet.getcurrent()))

    def close(self, **kwargs) -> None:
        self.closed_with = kwargs


def serve(session: Session, frames: list[str]) -> greenlet.greenlet:
    """Run ``serve`` over ``frames`` (then the client's close) in a greenlet; returns that greenlet."""
    websocket = fanout.DirectWebSocket.__new__(fanout.DirectWebSocket)
    websocket.session = session
    websocket.draining = None
    websocket.finished = False
    incoming = iter([*frames, None])
    websocket._sock = SimpleNamespace(receive=lambda: next(incoming))
    websocket.packet_queued = lambda: None
    reader = gevent.spawn(websocket.serve)
    reader.join(timeout=10)
    assert reader.successful(), reader.exception
    return reader


@pytest.mark.parametrize("frame", ["40", '40{"token":"t"}', "40/admin,", "41", "41/admin,"])
def test_a_connect_or_disconnect_is_handled_in_a_child_of_the_reader(frame):
    session = Session()
    reader = serve(session, [frame])
    (_, _, handler), _ = session.handled
    assert handler is not reader
    assert handler.parent is reader
    assert handler.dead


# A binary frame (an attachment) comes from gevent-websocket as a bytearray.
@pytest.mark.parametrize("frame", ['42["who"]', '43[{"ok":true}]', "2", "3", bytearray(b"40 binary"), b"41"])
def test_other_packets_are_handled_by_the_reader_itself(frame):
    session = Session()
    reader = serve(session, [frame])
    assert [handler for _, _, handler in session.handled] == [reader, reader]


def test_the_reader_reads_nothing_more_until_a_connect_that_waits_has_ended():
    def slow_connect(pkt):
        if pkt.encode().startswith("40"):
            gevent.sleep(0.05)  # the connect handler waits (for the database, say)

    session = Session(slow_connect)
    serve(session, ["40", '42["who"]', '42["typing"]'])
    assert [(step, data) for step, data, _ in session.handled] == [
        ("start", "40"),
        ("end", "40"),
        ("start", '42["who"]'),
        ("end", '42["who"]'),
        ("start", '42["typing"]'),
        ("end", '42["typing"]'),
    ]


def test_a_connect_that_fails_ends_the_connection_as_it_did_in_the_reader(caplog):
    def failing_connect(pkt):
        if pkt.encode().startswith("40"):
            raise RuntimeError("the connect handler broke")

    session = Session(failing_connect)
    with caplog.at_level(logging.ERROR, logger="tests.websocket_serve"):
        serve(session, ["40", '42["who"]'])
    assert [data for step, data, _ in session.handled if step == "start"] == ["40"]
    assert "Unknown receive error" in caplog.text
    assert session.closed_with is not None and session.closed_with["abort"] is True
