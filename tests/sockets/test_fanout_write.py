"""``DirectWebSocket.write_now`` and its queue's writer (app/sockets/fanout.py) on a real gevent socket pair,
without a server.

The session and the websocket are stand-ins holding exactly what ``write_now`` and ``drain``
read, around a real ``SessionQueue``; the connection is a real non-blocking socket, so what reaches the other end, and in
which order, is what the kernel was given.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import pytest

from app.sockets import fanout


class Frame:
    """A queued packet standing in for an Engine.IO packet: what ``drain`` writes is ``encode()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self) -> bytes:
        return self.data


class Connection:
    """A DirectWebSocket with nothing queued and no writer running, and the peer's socket."""

    def __init__(self) -> None:
        self.server_side, self.peer = gevent.socket.socketpair()
        self.server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.peer.settimeout(10)
        queue = fanout.SessionQueue()
        self.session = SimpleNamespace(
            sid="s1",
            upgraded=True,
            upgrading=False,
            closing=False,
            closed=False,
            last_ping=None,
            server=SimpleNamespace(ping_timeout=20),
            queue=queue,
        )
        websocket = fanout.DirectWebSocket.__new__(fanout.DirectWebSocket)
        websocket.session = self.session
        websocket.write_lock = gevent.lock.Semaphore()
        websocket.os_socket = None
        websocket.draining = None
        websocket.finished = False
        self.closed_websocket = gevent.event.Event()
        websocket._sock = SimpleNamespace(
            closed=False,
            stream=object(),
            handler=SimpleNamespace(socket=self.server_side),
            send=self.server_side.sendall,
            close=self.closed_websocket.set,
        )
        queue.on_put = websocket.packet_queued
        self.websocket = websocket

    def read_all(self, count: int) -> bytes:
        received = b""
        while len(received) < count:
            received += self.peer.recv(65536)
        return received

    def close(self) -> None:
        if self.websocket.draining is not None:
            self.websocket.draining.kill()
        self.server_side.close()
        self.peer.close()


@pytest.fixture
def connection() -> Iterator[Connection]:
    opened = Connection()
    yield opened
    opened.close()


def test_an_idle_socket_gets_the_frame_at_once(connection):
    assert connection.websocket.write_now(b"\x81\x02hi", 0.0) is True
    assert connection.read_all(4) == b"\x81\x02hi"


@pytest.mark.parametrize(
    "state",
    ["upgrading", "closing", "closed", "not upgraded", "ping timed out", "queue not empty", "writer busy", "locked"],
)
def test_a_socket_with_anything_ahead_of_the_frame_leaves_it_to_the_queue(connection, state):
    session = connection.session
    if state == "not upgraded":
        session.upgraded = False
    elif state == "ping timed out":
        session.last_ping = 100.0
    elif state == "queue not empty":
        session.queue.on_put = None  # no writer: the packet stays queued
        session.queue.put(Frame(b"earlier"))
    elif state == "writer busy":
        connection.websocket.draining = gevent.getcurrent()
    elif state == "locked":
        connection.websocket.write_lock.acquire()
    else:
        setattr(session, state, True)

    assert connection.websocket.write_now(b"\x81\x02hi", 121.0) is False

    if state == "queue not empty":
        session.queue.get_nowait()
    if state == "writer busy":
        connection.websocket.draining = None
    if state == "locked":
        connection.websocket.write_lock.release()
    connection.peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        connection.peer.recv(10)


def test_a_frame_the_kernel_takes_in_part_is_finished_before_the_next_queued_frame(connection):
    big = b"A" * 2_000_000
    assert connection.websocket.write_now(big, 0.0) is True
    # The rest is being finished: the next frame must queue, and the writer writes it only after the rest.
    assert connection.websocket.write_now(b"B", 0.0) is False
    connection.session.queue.put(Frame(b"B"))
    received = connection.read_all(len(big) + 1)
    assert received == big + b"B"


def test_a_full_socket_takes_nothing_and_the_queue_gets_the_frame(connection):
    filler = b"x" * 65536
    while True:
        try:
            connection.server_side._sock.send(filler)
        except BlockingIOError:
            break
    assert connection.websocket.write_now(b"\x81\x02hi", 0.0) is False
    assert not connection.websocket.write_lock.locked()


def test_a_closed_connection_takes_nothing_and_raises_nothing(connection):
    assert connection.websocket.write_now(b"\x81\x02hi", 0.0) is True  # the OS socket is now known
    connection.server_side.close()
    assert connection.websocket.write_now(b"\x81\x02hi", 0.0) is False


def test_a_queued_packet_starts_a_writer_that_writes_it_and_ends(connection):
    connection.session.queue.put(Frame(b"one"))
    writer = connection.websocket.draining
    assert writer is not None
    writer.join(timeout=10)
    assert writer.dead
    assert connection.websocket.draining is None
    assert connection.read_all(3) == b"one"
    # Nothing queued, nothing writing: the next frame goes straight out again.
    assert connection.websocket.write_now(b"two", 0.0) is True
    assert connection.read_all(3) == b"two"


def test_packets_queued_while_the_writer_waits_on_a_slow_reader_go_out_after_it_in_order(connection):
    big = b"A" * 2_000_000
    connection.session.queue.put(Frame(big))
    writer = connection.websocket.draining
    gevent.sleep(0)  # the writer now waits for the reader to make room
    assert not writer.dead
    for letter in b"BCD":
        connection.session.queue.put(Frame(bytes([letter])))
        assert connection.websocket.draining is writer, "a second writer started"
        assert connection.websocket.write_now(b"x", 0.0) is False
    assert connection.read_all(len(big) + 3) == big + b"BCD"
    writer.join(timeout=10)
    assert connection.websocket.draining is None


def test_the_end_of_the_queue_closes_the_websocket_and_nothing_is_written_after_it(connection):
    connection.session.queue.put(Frame(b"last"))
    connection.session.queue.put(None)
    connection.websocket.draining.join(timeout=10)
    assert connection.closed_websocket.is_set()
    assert connection.read_all(4) == b"last"
    connection.session.queue.put(Frame(b"late"))
    assert connection.websocket.draining is None
    assert connection.session.queue.qsize() == 1


def test_a_write_that_fails_ends_the_writer_and_closes_the_websocket(connection):
    connection.server_side.close()
    connection.session.queue.put(Frame(b"lost"))
    connection.websocket.draining.join(timeout=10)
    assert connection.closed_websocket.is_set()
    assert connection.websocket.finished is True


def test_every_packet_taken_is_marked_done_so_a_waiting_close_returns(connection):
    for data in (b"a", b"b", None):
        connection.session.queue.put(Frame(data) if data else None)
    # Engine.IO's close(wait=True) joins the queue.
    joiner = gevent.spawn(connection.session.queue.join)
    joiner.join(timeout=5)
    assert joiner.dead
    assert connection.session.queue.join(timeout=0) is True
