"""``DirectWebSocket.write_now`` (app/sockets/fanout.py) on a real gevent socket pair, without a server.

The session, its queue and the websocket are stand-ins holding exactly what ``write_now``
reads; the connection is a real non-blocking socket, so what reaches the other end, and in
which order, is what the kernel was given.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import gevent
import gevent.lock
import gevent.socket
import pytest

from app.sockets import fanout


class Connection:
    """A DirectWebSocket whose Engine.IO writer greenlet is parked on its empty queue, and the peer's socket."""

    def __init__(self) -> None:
        self.server_side, self.peer = gevent.socket.socketpair()
        self.server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.peer.settimeout(10)
        queue = fanout.WriterTrackingQueue()
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
        websocket._sock = SimpleNamespace(
            closed=False, stream=object(), handler=SimpleNamespace(socket=self.server_side)
        )
        self.websocket = websocket
        self.writer = gevent.spawn(self._write_from_queue)
        websocket.writer = self.writer
        gevent.sleep(0)  # the writer now waits in the queue's get

    def _write_from_queue(self) -> None:
        while True:
            frame = self.session.queue.get()
            with self.websocket.write_lock:
                self.server_side.sendall(frame)

    def read_all(self, count: int) -> bytes:
        received = b""
        while len(received) < count:
            received += self.peer.recv(65536)
        return received

    def close(self) -> None:
        self.writer.kill()
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
        session.queue.queue.append(b"earlier")
    elif state == "writer busy":
        connection.websocket.writer = gevent.getcurrent()
    elif state == "locked":
        connection.websocket.write_lock.acquire()
    else:
        setattr(session, state, True)

    assert connection.websocket.write_now(b"\x81\x02hi", 121.0) is False

    if state == "queue not empty":
        session.queue.queue.clear()
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
    connection.session.queue.put(b"B")
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
