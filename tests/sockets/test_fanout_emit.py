"""The room emit of direct writes (app/sockets/fanout.py) against python-socketio's own ``Manager.emit``.

No network: the websockets are stand-ins that take a frame or refuse it, and the queue is a
recorder, so each test can compare, recipient by recipient and in order, what the layer's one
loop does with what python-socketio's per-socket path does.
"""

from __future__ import annotations

import pytest
import socketio
from engineio import packet as eio_packet

from app.sockets import fanout

CHAT = "/"
MESSAGE = {"id": 7, "room": "general", "body": "hello"}


class StandInWebSocket:
    """Takes a frame (``accepts``), refuses it (the queue must take it), or fails."""

    def __init__(self, eio_sid: str, log: list, *, accepts: bool = True, fails: bool = False):
        self.eio_sid = eio_sid
        self.log = log
        self.accepts = accepts
        self.fails = fails

    def write_now(self, frame: bytes, now: float) -> bool:
        if self.fails:
            raise RuntimeError("broken websocket")
        if self.accepts:
            self.log.append(("direct", self.eio_sid, frame))
        return self.accepts


class Room:
    """A Socket.IO server with ``count`` sockets in room ``r``, a direct-writes layer and a log of what left."""

    def __init__(self, count: int = 6):
        self.server = socketio.Server(async_mode="threading")
        self.log: list = []
        self.sids: list[str] = []
        self.eio_sids: list[str] = []
        for number in range(count):
            eio_sid = f"eio{number}"
            sid = self.server.manager.connect(eio_sid, CHAT)
            self.server.manager.enter_room(sid, CHAT, "r", eio_sid=eio_sid)
            self.sids.append(sid)
            self.eio_sids.append(eio_sid)
        self.server._send_eio_packet = self.queued
        self.direct = fanout.DirectWrites(self.server)

    def queued(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        self.log.append(("queued", eio_sid, pkt.encode()))

    def stock_emit(self, *args, **kwargs) -> list:
        """What python-socketio's own Manager.emit sends, every packet through the queue."""
        self.log.clear()
        socketio.Manager.emit(self.server.manager, *args, **kwargs)
        return list(self.log)

    def layer_emit(self, *args, **kwargs) -> list:
        self.log.clear()
        self.direct.emit(*args, **kwargs)
        return list(self.log)


def frame_text(frame: bytes) -> str:
    """The payload of a short unmasked text frame."""
    assert frame[0] == 0x81 and frame[1] < 126
    return frame[2:].decode()


@pytest.mark.parametrize("data", [MESSAGE, (MESSAGE, 2), None, "text"])
@pytest.mark.parametrize("skip", [None, 1, [1, 4]])
def test_with_every_socket_on_the_queue_the_loop_sends_what_python_socketio_sends(data, skip):
    room = Room()
    skip_sid = None if skip is None else room.sids[skip] if isinstance(skip, int) else [room.sids[i] for i in skip]
    stock = room.stock_emit("message", data, CHAT, room="r", skip_sid=skip_sid)
    # No websocket registered (long-polling sockets): the queue takes every packet.
    assert room.layer_emit("message", data, CHAT, room="r", skip_sid=skip_sid, ignore_queue=False) == stock
    assert len(stock) == 6 - (0 if skip is None else 1 if isinstance(skip, int) else 2)


def test_each_socket_gets_the_packet_once_in_room_order_directly_or_queued():
    room = Room()
    for index, eio_sid in enumerate(room.eio_sids):
        # Every other socket has a busy writer or a full buffer: its packet must go on its queue.
        room.direct.websockets[eio_sid] = StandInWebSocket(eio_sid, room.log, accepts=index % 2 == 0)
    stock = room.stock_emit("message", MESSAGE, CHAT, to="r", skip_sid=room.sids[2])

    sent = room.layer_emit("message", MESSAGE, CHAT, to="r", skip_sid=room.sids[2])

    assert [eio_sid for _, eio_sid, _ in sent] == [eio_sid for _, eio_sid, _ in stock]
    assert [path for path, _, _ in sent] == ["queued" if i % 2 else "direct" for i in (0, 1, 3, 4, 5)]
    expected = stock[0][2]
    for path, _, payload in sent:
        assert (frame_text(payload) if path == "direct" else payload) == expected


def test_a_failing_websocket_is_left_to_its_queue_and_the_room_still_gets_the_emit():
    room = Room(3)
    for index, eio_sid in enumerate(room.eio_sids):
        room.direct.websockets[eio_sid] = StandInWebSocket(eio_sid, room.log, fails=index == 1)

    sent = room.layer_emit("message", MESSAGE, CHAT, room="r")

    assert [(path, eio_sid) for path, eio_sid, _ in sent] == [
        ("direct", "eio0"),
        ("queued", "eio1"),
        ("direct", "eio2"),
    ]


def test_deliveries_are_counted_once_per_emit_by_path():
    room = Room(5)
    for index, eio_sid in enumerate(room.eio_sids):
        room.direct.websockets[eio_sid] = StandInWebSocket(eio_sid, room.log, accepts=index < 3)
    direct, queued = room.direct._direct._value.get(), room.direct._queued._value.get()

    room.layer_emit("message", MESSAGE, CHAT, room="r")

    assert room.direct._direct._value.get() - direct == 3
    assert room.direct._queued._value.get() - queued == 2


@pytest.mark.parametrize(
    ("data", "callback"),
    [(b"\x00binary", None), (MESSAGE, lambda *args: None)],
    ids=["binary attachments", "callback"],
)
def test_binary_data_and_callbacks_take_python_socketios_own_path(data, callback):
    room = Room(3)
    for eio_sid in room.eio_sids:
        room.direct.websockets[eio_sid] = StandInWebSocket(eio_sid, room.log)
    stock_calls: list = []
    room.direct._manager_emit = lambda *args, **kwargs: stock_calls.append((args, kwargs))

    assert room.layer_emit("message", data, CHAT, room="r", callback=callback) == []

    assert len(stock_calls) == 1
    args, kwargs = stock_calls[0]
    assert args == ("message", data, CHAT)
    assert kwargs["room"] == "r" and kwargs["callback"] is callback


def test_an_emit_to_an_unknown_namespace_or_room_sends_nothing():
    room = Room(2)
    assert room.layer_emit("message", MESSAGE, "/elsewhere", room="r") == []
    assert room.layer_emit("message", MESSAGE, CHAT, room="nobody") == []


def test_the_loop_takes_the_place_of_the_plain_managers_emit_only():
    plain = socketio.Server(async_mode="gevent")
    layer = fanout.install_direct_writes(plain)
    assert plain.manager.emit == layer.emit

    class PublishingManager(socketio.PubSubManager):
        def _publish(self, data):
            pass

    publishing = socketio.Server(async_mode="gevent", client_manager=PublishingManager())
    fanout.install_direct_writes(publishing)
    # It publishes first; its deliveries on this worker still come through send_eio_packet.
    assert "emit" not in vars(publishing.manager)
    assert publishing._send_eio_packet.__func__ is fanout.DirectWrites.send_eio_packet
