"""Frame once, write many, and a writer greenlet only while a socket has something queued.

python-socketio already encodes a room emit once and hands the same Engine.IO packet to
every recipient (``Manager.emit`` -> ``Server._send_eio_packet``). Stock Engine.IO then
puts it on each socket's queue, and each socket's writer greenlet wakes, frames it and
writes it: a queue put, a greenlet switch and a framing per delivery. Here the frame is
built once per packet and written with one non-blocking ``send()`` to each websocket
that has nothing queued, in the emitting greenlet.

Stock Engine.IO also keeps one writer greenlet per websocket for the socket's whole life,
parked on its queue almost all the time (about 11 KB per idle socket, its saved stack and
frames). Here a websocket session is served by ``DirectWebSocket.serve``, Engine.IO's
websocket transport with one difference: no writer waits. A packet put on the queue starts
a short-lived greenlet that writes what is queued, in order, and ends when the queue is
empty. The reader itself handles a Socket.IO CONNECT or DISCONNECT in a child greenlet and
waits for it, so the app's deep connect and disconnect frames never touch the reader's own
frame memory, which an idle socket keeps.

Order and exactly-once hold because a frame is written directly only when nothing of that
socket can be ahead of it: the socket is an upgraded websocket, its queue is empty, no
greenlet is writing its queue (so none holds a packet taken from the queue and not yet
written), and no earlier direct frame is still being finished. In every other case, and
whenever the kernel takes none of the frame, the packet goes on the queue as before. A
frame the kernel takes only in part is finished by a greenlet of its own that holds the
socket's write lock; every write from the queue takes that lock, so nothing overtakes the
rest of the frame, and later packets queue behind it: a slow reader never stalls the
emitting greenlet.

It relies on internals of python-engineio, python-socketio and gevent-websocket;
``check_fanout_internals()`` names any that changed, at start-up.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import inspect
import logging
import time

import engineio.async_drivers.gevent as engineio_gevent
import gevent
import gevent.event
import gevent.hub
import gevent.lock
import gevent.queue
import gevent.socket
import greenlet
import socketio
from engineio import base_server as eio_base_server
from engineio import base_socket as eio_base_socket
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket
from geventwebsocket.websocket import Header, WebSocket
from socketio import packet as socketio_packet

from app.metrics import EMIT_DELIVERIES, SOCKET_WRITERS
from app.sockets.internals import names_used, parameters

log = logging.getLogger("switchboard.sockets.fanout")

# Socket.IO packets of one text frame: CONNECT, DISCONNECT, EVENT, ACK and CONNECT_ERROR. BINARY_EVENT and
# BINARY_ACK ("5", "6") come with attachments, which stay on the queue.
DIRECT_SOCKETIO_TYPES = frozenset("01234")
# Engine.IO MESSAGE packets carrying a Socket.IO CONNECT or DISCONNECT ("40", "41"). python-socketio
# runs the app's connect and disconnect handlers in the reader (sign-in, the database, presence):
# their deep Python frames would touch pages of the reader greenlet's own frame memory, which every
# idle websocket then keeps for its whole life (about 4.5 KB per socket). Read in a child greenlet,
# they use that greenlet's frame memory, freed when it ends (see DirectWebSocket.serve).
SOCKETIO_CONNECTS = frozenset({"40", "41"})
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})


class SessionQueue:
    """An Engine.IO session's packet queue: what Engine.IO asks of gevent's ``JoinableQueue``, a few
    hundred bytes per socket instead of 2.8 KB.

    gevent's queue allocates three deques and an event for every session up front; a
    websocket's queue is empty almost always, so here the deque and the waiting greenlets'
    list come with their first use. ``get`` waits as gevent's does: a waiting greenlet is
    switched to from the hub, and only while a packet is there for it, so one whose wait timed
    out is never woken. Once the session has a websocket, ``on_put`` learns of each packet put.
    """

    __slots__ = ("_items", "_getters", "_waking", "_unfinished", "_all_done", "on_put")

    def __init__(self, *args, **kwargs) -> None:
        # Engine.IO asks for an unbounded queue (create_queue() with no arguments).
        self._items: collections.deque | None = None
        self._getters: collections.deque | None = None
        self._waking = False
        self._unfinished = 0
        self._all_done: gevent.event.Event | None = None
        self.on_put = None

    def qsize(self) -> int:
        items = self._items
        return len(items) if items is not None else 0

    def empty(self) -> bool:
        return not self._items

    def put(self, item, block=True, timeout=None) -> None:
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        items.append(item)
        self._unfinished += 1
        if self._getters and not self._waking:
            self._waking = True
            gevent.get_hub().loop.run_callback(self._wake)
        on_put = self.on_put
        if on_put is not None:
            on_put()

    def put_nowait(self, item) -> None:
        self.put(item, False)

    def _wake(self) -> None:
        """In the hub: hand the packets there are to the greenlets waiting, first come first served."""
        self._waking = False
        getters = self._getters
        while getters and self._items:
            getters.popleft().switch(None)

    def get(self, block=True, timeout=None):
        items = self._items
        if items:
            return items.popleft()
        if not block:
            raise gevent.queue.Empty
        getters = self._getters
        if getters is None:
            getters = self._getters = collections.deque()
        timer = gevent.Timeout._start_new_or_dummy(timeout)
        try:
            while True:
                waiter = gevent.hub.Waiter()
                getters.append(waiter)
                try:
                    waiter.get()
                except BaseException:
                    if waiter in getters:
                        getters.remove(waiter)
                    raise
                items = self._items
                if items:
                    return items.popleft()
        except gevent.Timeout as error:
            if error is not timer:
                raise
            raise gevent.queue.Empty from None
        finally:
            timer.close()

    def get_nowait(self):
        return self.get(False)

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._all_done is not None:
            self._all_done.set()

    def join(self, timeout=None) -> bool:
        """Wait until every packet put has been taken and marked done (Engine.IO's ``close(wait=True)``)."""
        if self._unfinished == 0:
            return True
        all_done = self._all_done
        if all_done is None or all_done.is_set():
            all_done = self._all_done = gevent.event.Event()
        return all_done.wait(timeout)


class DirectWebSocket(engineio_gevent.WebSocketWSGI):
    """Engine.IO's gevent-websocket wrapper, serving its session's websocket transport itself.

    Every write from the queue (and the closing frame) takes ``write_lock``, so it never
    interleaves with the rest of a direct frame. ``draining`` is the greenlet writing what
    is queued, if one is.
    """

    fanout: DirectWrites  # set on the subclass each DirectWrites installs

    def __call__(self, environ, start_response):
        self.write_lock = gevent.lock.Semaphore()
        self.draining = None
        self.finished = False
        self.os_socket = None
        session = getattr(self.app, "__self__", None)
        if not isinstance(session, eio_socket.Socket):
            return super().__call__(environ, start_response)
        websocket = environ.get("wsgi.websocket")
        if websocket is None:
            return super().__call__(environ, start_response)  # Engine.IO's error: not a gevent-websocket server
        # What Engine.IO's wrapper keeps before it calls the handler; serve is called here directly,
        # one frame less on the stack every idle websocket's greenlet keeps.
        self._sock = websocket
        self.environ = environ
        self.session = session
        self.fanout.websockets[session.sid] = self
        try:
            return self.serve()
        finally:
            if self.fanout.websockets.get(session.sid) is self:
                del self.fanout.websockets[session.sid]

    def send(self, message):
        with self.write_lock:
            return super().send(message)

    def close(self):
        with self.write_lock:
            return super().close()

    def receive(self):
        """The next message from the client (None once it closed), refusing one over Engine.IO's size limit."""
        data = self._sock.receive()
        if data and len(data) > self.session.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    def serve(self) -> list:
        """Engine.IO's websocket transport (``Socket._websocket_handler``) for this session, with no writer waiting.

        The same steps as Engine.IO's: on an upgrade from polling, the probe, its answer, the
        NOOP that ends the pending poll and the UPGRADE packet; then the session's packets
        are read here until the client goes, and written by ``drain`` as they are queued.
        (Engine.IO's attempt to set a socket timeout finds nothing to set on gevent-websocket.)
        """
        session = self.session
        server = session.server
        if session.connected:
            session.upgrading = True  # packets queue during the upgrade
            probe = eio_packet.Packet(encoded_packet=self.receive())
            if probe.packet_type != eio_packet.PING or probe.data != "probe":
                server.logger.info("%s: Failed websocket upgrade, no PING packet", session.sid)
                session.upgrading = False
                return []
            self.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            session.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            upgrade = self.receive()
            if eio_packet.Packet(encoded_packet=upgrade).packet_type != eio_packet.UPGRADE:
                session.upgraded = False
                server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.", session.sid, upgrade
                )
                session.upgrading = False
                return []
            session.upgraded = True
            session.upgrading = False
        else:
            session.connected = True
            session.upgraded = True
        session.queue.on_put = self.packet_queued
        self.packet_queued()  # what was queued during the upgrade
        server.logger.info("%s: Upgrade to websocket successful", session.sid)

        # The loop reads gevent-websocket directly: each idle websocket's greenlet waits here, and
        # every frame less on its stack is memory less per socket.
        receive = self._sock.receive
        limit = server.max_http_buffer_size
        while True:
            try:
                data = receive()
                if data and len(data) > limit:
                    raise ValueError("packet is too large")
            except Exception as error:
                if not session.closed:
                    server.logger.info('%s: Unexpected error "%s", closing connection', session.sid, error)
                break
            if data is None:  # the client closed the connection
                break
            try:
                if isinstance(data, str) and data[:2] in SOCKETIO_CONNECTS:  # (a binary frame is a bytearray)
                    # A greenlet of its own whose parent is this one: this reader resumes, with its
                    # result or its exception, only once it has ended, so nothing after the
                    # connect is read before the connect is done, as when it ran here.
                    greenlet.greenlet(session.receive).switch(eio_packet.Packet(encoded_packet=data))
                else:
                    session.receive(eio_packet.Packet(encoded_packet=data))
            except eio_exceptions.UnknownPacketError:
                pass
            except eio_exceptions.SocketIsClosedError:
                server.logger.info("Receive error -- socket is closed")
                break
            except Exception:
                server.logger.exception("Unknown receive error")
                break

        session.queue.put(None)  # the writer closes the websocket after what is queued
        draining = self.draining
        if draining is not None:
            draining.join()
        session.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        return []

    def packet_queued(self) -> None:
        """Start a writer for the queue unless one is running (it takes this packet too) or the socket is done."""
        if self.draining is None and not self.finished and self.session.queue.qsize():
            SOCKET_WRITERS.inc()
            self.draining = gevent.spawn(self.drain)

    def drain(self) -> None:
        """Write the queued packets in order, and end once the queue is empty; None closes the websocket.

        As Engine.IO's writer greenlet does, minus the wait for the next packet: taking a
        packet and finding the queue empty never switch greenlets, so a packet put
        while this runs is written by it, and one put after it ends starts a new writer.
        """
        queue = self.session.queue
        try:
            while True:
                try:
                    pkt = queue.get(block=False)
                except gevent.queue.Empty:
                    return
                queue.task_done()
                if pkt is None:
                    break
                try:
                    self.send(pkt.encode())
                except Exception:
                    break
            self.finished = True
            self.close()
        finally:
            self.draining = None
            SOCKET_WRITERS.dec()

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
        if session.queue.qsize() or self.draining is not None or self.write_lock.locked():
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
        eio._async = {**eio._async, "queue": SessionQueue, "websocket": websocket_class}
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


# The source of python-engineio 4.15.1's Socket._websocket_handler, which DirectWebSocket.serve replaces:
# any change to it must be reviewed against serve before the layer runs with it.
WEBSOCKET_HANDLER_SHA256 = "58afe122719282de1def07b5530c154fbf41a40481bc8a787c4eb7d94db56c9c"

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
    # DirectWebSocket.serve replaces this handler, and does what it does (see WEBSOCKET_HANDLER_SHA256).
    (
        eio_socket.Socket,
        "_websocket_handler",
        {"wait", "receive", "close", "queue", "put", "poll", "send", "upgraded", "upgrading", "connected"},
    ),
    (eio_socket.Socket, "receive", {"packet_type"}),
    (eio_socket.Socket, "close", {"closed", "closing", "queue", "put"}),
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

    Direct writes keep each socket's order only while this layer is the only writer of its
    websockets: ``DirectWebSocket.serve`` stands in for Engine.IO's websocket handler, so a
    release that changes that handler must stop the start, not reorder or lose messages.
    """
    problems: list[str] = []
    for owner, name, names in EXPECTED_NAMES:
        missing = names - names_used(getattr(owner, name, None))
        if missing:
            problems.append(f"{owner.__name__}.{name} no longer uses {', '.join(sorted(missing))}")
    for owner, attributes in (
        (eio_socket.Socket, ("check_ping_timeout", "receive", "close", "_websocket_handler", "_upgrade_websocket")),
        (engineio_gevent.WebSocketWSGI, ("__call__", "send", "close", "wait")),
        (eio_exceptions, ("UnknownPacketError", "SocketIsClosedError")),
        (eio_base_server.BaseServer.reason, ("TRANSPORT_CLOSE",)),
        (socketio.Server, ("_send_eio_packet",)),
        (socketio.Manager, ("get_participants", "emit")),
        (gevent.hub.Waiter, ("get", "switch")),
        (gevent.Timeout, ("_start_new_or_dummy", "close")),
        (gevent.lock.Semaphore, ("acquire", "release", "locked")),
        (gevent.socket.socket, ("send", "sendall")),
        (Header, ("encode_header",)),
        (WebSocket, ("OPCODE_TEXT", "closed", "stream", "handler", "send", "close")),
        (eio_packet.Packet, ("encode",)),
    ):
        problems += [f"missing {owner.__qualname__}.{name}" for name in attributes if not hasattr(owner, name)]
    handler = getattr(eio_socket.Socket, "_websocket_handler", None)
    try:
        handler_sha256 = hashlib.sha256(inspect.getsource(handler).encode()).hexdigest() if handler else "missing"
    except (OSError, TypeError):
        handler_sha256 = "unreadable"
    if handler_sha256 != WEBSOCKET_HANDLER_SHA256:
        problems.append(
            f"Socket._websocket_handler is not the one DirectWebSocket.serve replaces (sha256 {handler_sha256})"
        )
    if tuple(parameters(eio_socket.Socket.close)) != ("self", "wait", "abort", "reason"):
        problems.append("Socket.close no longer takes (wait, abort, reason)")
    if hasattr(WebSocket, "settimeout"):
        problems.append("gevent-websocket's WebSocket now has settimeout, which Engine.IO's handler would call")
    if not {"self", "message"} <= set(parameters(engineio_gevent.WebSocketWSGI.send)):
        problems.append("WebSocketWSGI.send no longer takes (message)")
    if "app" not in names_used(engineio_gevent.WebSocketWSGI.__init__) or "_sock" not in names_used(
        engineio_gevent.WebSocketWSGI.__call__
    ):
        problems.append("WebSocketWSGI no longer keeps its handler as .app and its websocket as ._sock")
    if not {"wsgi.websocket", "_sock", "environ", "app"} <= names_used(
        engineio_gevent.WebSocketWSGI.__call__, strings=True
    ):
        problems.append("WebSocketWSGI.__call__ no longer takes environ['wsgi.websocket'] as ._sock before the handler")
    engineio_queue_use = names_used(eio_socket.Socket.poll) | names_used(eio_socket.Socket.close)
    if (
        engineio_queue_use & {"put_nowait", "get_nowait", "peek", "empty", "full"}
        or not {
            "get",
            "task_done",
            "put",
            "join",
        }
        <= engineio_queue_use
    ):
        problems.append("Engine.IO no longer uses its queue as SessionQueue serves it (get, task_done, put, join)")
    if engineio_gevent._async.get("queue_empty") is not gevent.queue.Empty:
        problems.append("engineio's gevent driver no longer waits on gevent.queue.Empty")
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
