"""Frame once, write many: an emit's websocket frame is built once and written straight to every idle websocket.

python-socketio already encodes a room emit once and hands the same Engine.IO packet to
every recipient (``Manager.emit`` -> ``Server._send_eio_packet``). Stock Engine.IO then
puts it on each socket's queue, and each socket's writer greenlet wakes, frames it and
writes it: a queue put, a greenlet switch and a framing per delivery. Here the frame is
built once per packet and written with one non-blocking ``send()`` to each websocket
whose writer is idle, in the emitting greenlet.

Order and exactly-once hold because a frame is written directly only when nothing of that
socket can be ahead of it: the socket is an upgraded websocket, its queue is empty, its
writer greenlet is parked in the queue's blocking ``get`` (so it holds no packet taken from
the queue and not yet written), and no earlier direct frame is still being finished. In
every other case, and whenever the kernel takes none of the frame, the packet goes on the
queue as before. A frame the kernel takes only in part is finished by a greenlet of its own
that holds the socket's write lock; the writer takes that lock for each of its writes, so
nothing overtakes the rest of the frame, and later packets queue behind it: a slow reader
never stalls the emitting greenlet.

It relies on internals of python-engineio, python-socketio and gevent-websocket;
``check_fanout_internals()`` names any that changed, at start-up.
"""

from __future__ import annotations

import errno
import logging
import time

import engineio.async_drivers.gevent as engineio_gevent
import gevent
import gevent.lock
import gevent.queue
import gevent.socket
import socketio
from engineio import base_server as eio_base_server
from engineio import base_socket as eio_base_socket
from engineio import packet as eio_packet
from engineio import socket as eio_socket
from geventwebsocket.websocket import Header, WebSocket
from socketio import packet as socketio_packet

from app.metrics import EMIT_DELIVERIES
from app.sockets.internals import names_used, parameters

log = logging.getLogger("switchboard.sockets.fanout")

# Socket.IO EVENT packets only: BINARY_EVENT ("5") comes with attachments, which stay on the queue.
DIRECT_SOCKETIO_TYPES = frozenset("2")
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})


class WriterTrackingQueue(gevent.queue.JoinableQueue):
    """An Engine.IO socket's packet queue that knows which greenlets wait in a blocking ``get``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waiting: set = set()

    def get(self, block=True, timeout=None):
        if not block:
            return super().get(block, timeout)
        current = gevent.getcurrent()
        self.waiting.add(current)
        try:
            return super().get(block, timeout)
        finally:
            # No switch between taking the item and this line: a waiting greenlet holds nothing.
            self.waiting.discard(current)


class DirectWebSocket(engineio_gevent.WebSocketWSGI):
    """Engine.IO's gevent-websocket wrapper, registered for direct writes while its handler runs.

    Every write of Engine.IO's writer greenlet (and its closing frame) takes ``write_lock``,
    so it never interleaves with the rest of a direct frame. ``writer`` is the greenlet that
    last wrote through ``send``: after the upgrade probe, Engine.IO's writer greenlet.
    """

    fanout: DirectWrites  # set on the subclass each DirectWrites installs

    def __call__(self, environ, start_response):
        self.write_lock = gevent.lock.Semaphore()
        self.writer = None
        self.os_socket = None
        session = getattr(self.app, "__self__", None)
        if not isinstance(session, eio_socket.Socket):
            return super().__call__(environ, start_response)
        self.session = session
        self.fanout.websockets[session.sid] = self
        try:
            return super().__call__(environ, start_response)
        finally:
            if self.fanout.websockets.get(session.sid) is self:
                del self.fanout.websockets[session.sid]

    def send(self, message):
        self.writer = gevent.getcurrent()
        with self.write_lock:
            return super().send(message)

    def close(self):
        with self.write_lock:
            return super().close()

    def write_now(self, frame: bytes, now: float) -> bool:
        """Write ``frame`` if nothing of this socket is ahead of it; False leaves it to the queue.

        ``now`` is ``time.time()`` taken once per emit. It never switches greenlets, so an emit's
        checks and writes to every socket of a room happen with nothing else running in between.
        """
        session = self.session
        if not session.upgraded or session.upgrading or session.closing or session.closed:
            return False
        last_ping = session.last_ping
        if last_ping and now - last_ping > session.server.ping_timeout:
            # Engine.IO's own send (the queue) closes the timed-out session.
            return False
        queue = session.queue
        if queue.qsize() or self.writer not in queue.waiting or self.write_lock.locked():
            return False
        websocket = self._sock
        if websocket.closed or websocket.stream is None:
            return False
        connection = self.os_socket
        if connection is None:
            gevent_socket = websocket.handler.socket
            if type(gevent_socket) is not gevent.socket.socket:
                return False
            # The non-blocking OS socket under gevent's: its send() raises BlockingIOError (EAGAIN)
            # instead of waiting, and EBADF once closed (gevent's closed socket too).
            connection = self.os_socket = gevent_socket._sock  # type: ignore[attr-defined]
        try:
            sent = connection.send(frame)
        except OSError as error:
            if error.errno not in WOULD_BLOCK:
                log.debug("direct write to %s failed (%s); the queue takes it", session.sid, error)
            return False
        if sent == len(frame):
            return True
        if sent == 0:
            return False
        self.write_lock.acquire()  # free: checked above, and nothing switched since
        gevent.spawn(self._finish, websocket.handler.socket, memoryview(frame)[sent:])
        return True

    def _finish(self, connection: gevent.socket.socket, rest: memoryview) -> None:
        try:
            connection.sendall(rest)
        except OSError as error:
            # The connection is gone; the writer's next write or the reader ends the session.
            log.debug("finishing a direct frame to %s failed: %s", self.session.sid, error)
        finally:
            self.write_lock.release()


class DirectWrites:
    """The layer on one Socket.IO server: frames built once, written directly where order allows."""

    def __init__(self, sio_server: socketio.Server) -> None:
        self.sio_server = sio_server
        self.websockets: dict[str, DirectWebSocket] = {}
        self._queued_send = sio_server._send_eio_packet
        self._last_packet: eio_packet.Packet | None = None
        self._last_frame: bytes | None = None
        self._direct = EMIT_DELIVERIES.labels(path="direct")
        self._queued = EMIT_DELIVERIES.labels(path="queued")
        self._manager_emit = sio_server.manager.emit

    def install(self) -> None:
        eio = self.sio_server.eio
        websocket_class = type("DirectWebSocket", (DirectWebSocket,), {"fanout": self})
        # A copy: the driver's table is shared by every Engine.IO server of the process.
        eio._async = {**eio._async, "queue": WriterTrackingQueue, "websocket": websocket_class}
        self.sio_server._send_eio_packet = self.send_eio_packet
        # A manager of its own emit (a message queue's, which publishes first) keeps it, and its
        # deliveries still come through send_eio_packet.
        if type(self.sio_server.manager).emit is socketio.Manager.emit:
            self.sio_server.manager.emit = self.emit

    def frame_of(self, pkt: eio_packet.Packet) -> bytes | None:
        """The websocket text frame of ``pkt``, built once for all its recipients; None if it must queue."""
        if pkt is self._last_packet:
            return self._last_frame
        frame = None
        if (
            pkt.packet_type == eio_packet.MESSAGE
            and not pkt.binary
            and isinstance(pkt.data, str)
            and pkt.data[:1] in DIRECT_SOCKETIO_TYPES
        ):
            payload = pkt.encode().encode("utf-8")
            frame = bytes(Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)) + payload
        self._last_packet, self._last_frame = pkt, frame
        return frame

    def send_eio_packet(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        """Socket.IO's one way out for packets to one socket: straight to the websocket when possible, else the queue."""
        websocket = self.websockets.get(eio_sid)
        if websocket is not None:
            frame = self.frame_of(pkt)
            try:
                written = frame is not None and websocket.write_now(frame, time.time())
            except Exception:
                # Nothing was written: the queue delivers it.
                log.exception("direct write to %s failed; the queue takes it", eio_sid)
                written = False
            if written:
                self._direct.inc()
                return
        self._queued.inc()
        self._queued_send(eio_sid, pkt)

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        """``Manager.emit`` for the plain in-process manager, with one loop over the room's sockets.

        The same packet as python-socketio builds, and the same recipients (``get_participants``
        less ``skip_sid``), each given the packet in turn as ``Manager.emit`` does: written
        directly where order allows, else put on that socket's queue. Anything else (callbacks,
        binary data) takes python-socketio's own path.
        """
        manager = self.sio_server.manager
        room = to or room
        if callback or namespace not in manager.rooms:
            # (the plain manager ignores the rest of kwargs, such as ignore_queue)
            return self._manager_emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)
        arguments = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.sio_server.packet_class(
            socketio_packet.EVENT, namespace=namespace, data=[event, *arguments]
        ).encode()
        if not isinstance(encoded, str):
            return self._manager_emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)
        pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = self.frame_of(pkt)
        skipped = skip_sid if isinstance(skip_sid, list) else (skip_sid,)
        websockets = self.websockets
        queued_send = self._queued_send
        now = time.time()
        direct = queued = 0
        for sid, eio_sid in manager.get_participants(namespace, room):
            if sid in skipped:
                continue
            websocket = websockets.get(eio_sid)
            if websocket is not None and frame is not None:
                try:
                    if websocket.write_now(frame, now):
                        direct += 1
                        continue
                except Exception:
                    log.exception("direct write to %s failed; the queue takes it", eio_sid)
            queued += 1
            queued_send(eio_sid, pkt)
        if direct:
            self._direct.inc(direct)
        if queued:
            self._queued.inc(queued)


def fanout_installable(sio_server: socketio.Server) -> bool:
    """Direct writes need gevent with gevent-websocket, as the real server runs (not the tests' threading mode)."""
    return sio_server.eio.async_mode == "gevent" and engineio_gevent.SimpleWebSocketWSGI is None


def install_direct_writes(sio_server: socketio.Server) -> DirectWrites:
    fanout = DirectWrites(sio_server)
    fanout.install()
    return fanout


# What each function must still refer to for the layer's assumptions to hold (looked up at check time).
EXPECTED_NAMES = (
    # Sessions keep their packets on a queue made by the server, and keep these flags.
    (
        eio_base_socket.BaseSocket,
        "__init__",
        {"create_queue", "queue", "upgraded", "upgrading", "closing", "closed", "sid"},
    ),
    (eio_base_server.BaseServer, "create_queue", {"_async"}),
    # The websocket wrapper comes from the same table, and wraps the handler bound to its session.
    (eio_socket.Socket, "_upgrade_websocket", {"_async", "_websocket_handler"}),
    # The writer greenlet takes packets with poll() (a blocking get, then gets without blocking)
    # and writes each through the wrapper's send(), closing it through close().
    (eio_socket.Socket, "poll", {"queue", "get"}),
    (
        eio_socket.Socket,
        "_websocket_handler",
        {"poll", "send", "close", "start_background_task", "upgraded", "upgrading"},
    ),
    (eio_socket.Socket, "send", {"check_ping_timeout", "queue", "put"}),
    # A session has timed out when its last ping is older than the server's ping_timeout.
    (eio_socket.Socket, "check_ping_timeout", {"last_ping", "server", "ping_timeout", "close"}),
    # A room emit encodes once and hands the same Engine.IO packet to every recipient here;
    # DirectWrites.emit does what it does without a callback, with the same packet and recipients.
    (
        socketio.Manager,
        "emit",
        {"_send_eio_packet", "get_participants", "packet_class", "EVENT", "MESSAGE", "rooms", "encode"},
    ),
    # gevent's socket keeps the non-blocking OS socket it wraps as _sock.
    (gevent.socket.socket, "__init__", {"_sock", "setblocking"}),
)


def check_fanout_internals() -> None:
    """Fail at start-up, naming what changed, if the libraries no longer have what direct writes rely on.

    Direct writes keep each socket's order only while Engine.IO's writer works as it does
    today (one writer greenlet per websocket that writes whatever it took from the queue
    before it waits on the queue again); an upgrade that changes that must stop the start,
    not reorder messages.
    """
    problems: list[str] = []
    for owner, name, names in EXPECTED_NAMES:
        missing = names - names_used(getattr(owner, name, None))
        if missing:
            problems.append(f"{owner.__name__}.{name} no longer uses {', '.join(sorted(missing))}")
    for owner, attributes in (
        (eio_socket.Socket, ("check_ping_timeout", "poll", "_websocket_handler", "_upgrade_websocket")),
        (engineio_gevent.WebSocketWSGI, ("__call__", "send", "close")),
        (socketio.Server, ("_send_eio_packet",)),
        (socketio.Manager, ("get_participants", "emit")),
        (gevent.queue.JoinableQueue, ("get", "qsize")),
        (gevent.lock.Semaphore, ("acquire", "release", "locked")),
        (gevent.socket.socket, ("send", "sendall")),
        (Header, ("encode_header",)),
        (WebSocket, ("OPCODE_TEXT", "closed", "stream", "handler", "send", "close")),
        (eio_packet.Packet, ("encode",)),
    ):
        problems += [f"missing {owner.__qualname__}.{name}" for name in attributes if not hasattr(owner, name)]
    if not {"self", "message"} <= set(parameters(engineio_gevent.WebSocketWSGI.send)):
        problems.append("WebSocketWSGI.send no longer takes (message)")
    if "app" not in names_used(engineio_gevent.WebSocketWSGI.__init__) or "_sock" not in names_used(
        engineio_gevent.WebSocketWSGI.__call__
    ):
        problems.append("WebSocketWSGI no longer keeps its handler as .app and its websocket as ._sock")
    if not {"block", "timeout"} <= set(parameters(gevent.queue.JoinableQueue.get)):
        problems.append("gevent's Queue.get no longer takes (block, timeout)")
    emit_parameters = ("self", "event", "data", "namespace", "room", "skip_sid", "callback", "to", "kwargs")
    if tuple(parameters(socketio.Manager.emit)) != emit_parameters:
        problems.append(f"Manager.emit no longer takes ({', '.join(emit_parameters[1:])})")
    if "queue" not in engineio_gevent._async or "websocket" not in engineio_gevent._async:
        problems.append("engineio's gevent driver no longer names its queue and websocket classes in _async")
    frame = (
        Header.encode_header(True, getattr(WebSocket, "OPCODE_TEXT", 1), b"", 3, 0)
        if hasattr(Header, "encode_header")
        else b""
    )
    if bytes(frame) != b"\x81\x03":
        problems.append(f"Header.encode_header no longer builds a plain text frame header ({bytes(frame)!r})")
    if (eio_packet.MESSAGE, eio_packet.Packet(eio_packet.MESSAGE, "2[]").encode()) != (4, "42[]"):
        problems.append("Engine.IO MESSAGE packets no longer encode as '4' + text")
    if problems:
        raise RuntimeError(
            "python-engineio, python-socketio or gevent changed under direct writes (app/sockets/fanout.py): "
            + "; ".join(problems)
            + ". Pin the versions in requirements.txt, update the layer, or set FANOUT_DIRECT_WRITES=0."
        )
