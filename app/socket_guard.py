"""Socket.IO packets held to the protocol: malformed packets, binary attachments and garbage close the connection.

python-socketio decodes leniently and reports what it cannot decode by raising inside
Engine.IO's message handler, which logs a traceback and answers nothing. A packet that
announces binary attachments makes it take every later message of that connection as
one, without bound. Here each incoming message is checked first:

- a packet that cannot be a Socket.IO packet at all, announces more binary attachments
  than an event takes, or sends text where an attachment is due closes the whole
  Engine.IO connection at once;
- a packet whose header is sound but whose JSON is not is answered with an ``invalid``
  ack when it carries an ack id on a connected namespace; a connection that keeps
  sending such packets is closed;
- each connection logs at most one line about it, and all of them together at most a
  few per minute.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from socketio import packet as sio_packet

log = logging.getLogger("switchboard.sockets.guard")

# type, attachment count, namespace (up to its comma, or to the end), ack id, JSON data
HEADER = re.compile(
    r"(?P<type>[0-6])(?:(?P<attachments>[0-9]+)-)?(?P<namespace>/[^,]*,?)?(?P<id>[0-9]+)?(?P<data>[\[{\"].*)?",
    re.DOTALL,
)
# socket.io-client numbers its acks from 0 upwards; no real client gets near this.
MAX_ACK_ID_DIGITS = 15


class BadPacket(ValueError):
    """A message that is not a packet this server takes.

    ``fatal`` ones close the connection; the others are answered on ``ack_id`` when they have one.
    """

    def __init__(self, reason: str, *, fatal: bool = False, namespace: str | None = None, ack_id: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal
        self.namespace = namespace
        self.ack_id = ack_id


class StrictPacket(sio_packet.Packet):
    """python-socketio's packet, decoding only what the protocol allows and saying why not."""

    max_attachments = 1

    def decode(self, encoded_packet):
        if not isinstance(encoded_packet, str):
            raise BadPacket("binary data where a packet was expected", fatal=True)
        match = HEADER.fullmatch(encoded_packet)
        if match is None:
            raise BadPacket("not a Socket.IO packet", fatal=True)
        packet_type = int(match["type"])
        if packet_type == sio_packet.CONNECT_ERROR:
            raise BadPacket("clients do not send CONNECT_ERROR", fatal=True)
        binary = packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
        if (match["attachments"] is not None) != binary:
            raise BadPacket("attachment count on the wrong kind of packet", fatal=True)
        if binary and not 1 <= int(match["attachments"]) <= self.max_attachments:
            raise BadPacket(f"more than {self.max_attachments} binary attachment announced", fatal=True)
        if match["id"] is not None and len(match["id"]) > MAX_ACK_ID_DIGITS:
            raise BadPacket("ack id too long", fatal=True)
        namespace = (match["namespace"] or "/").rstrip(",").split("?", 1)[0] or "/"
        ack_id = int(match["id"]) if match["id"] is not None else None
        try:
            count = super().decode(encoded_packet)
        except ValueError:
            raise BadPacket("the packet's data is not valid JSON", namespace=namespace, ack_id=ack_id) from None
        if packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT) and not (
            isinstance(self.data, list) and self.data and isinstance(self.data[0], str)
        ):
            raise BadPacket("an event is a JSON array that starts with its name", namespace=namespace, ack_id=ack_id)
        return count


class LogBudget:
    """At most ``per_minute`` lines a minute, however many connections misbehave."""

    def __init__(self, per_minute: int = 10) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._minute = 0
        self._used = 0

    def allow(self) -> bool:
        minute = int(time.monotonic() // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used += 1
            return self._used <= self.per_minute


log_budget = LogBudget()


def close_connection(eio_server, eio_sid: str, reason: str) -> None:
    """Close one Engine.IO connection now, every namespace on it, without waiting for a poll to collect it."""
    session = eio_server.sockets.get(eio_sid)
    if session is not None and not session.closed:
        session.close(wait=False, reason=eio_server.reason.SERVER_DISCONNECT)
    eio_server.sockets.pop(eio_sid, None)


@dataclass
class ConnectionRecord:
    address: str
    bad_packets: int = 0
    logged: bool = False
    closing: bool = False
    attachment_bytes: int = 0
    # No namespace connected yet: an open Engine.IO session nobody has signed in on.
    anonymous: bool = True
    # The libev timer of the connect timeout (gevent), stopped once a namespace connects.
    expiry: Any = field(default=None, repr=False)


class PacketGuard:
    """Sits between Engine.IO and python-socketio's packet dispatch for every message."""

    def __init__(
        self,
        sio_server,
        *,
        max_bad_packets: int = 20,
        max_attachment_bytes: int = 1_000_000,
        anonymous_per_address: int = 100,
        connect_timeout: float = 30,
    ) -> None:
        self.server = sio_server
        self.eio = sio_server.eio
        self.max_bad_packets = max_bad_packets
        self.max_attachment_bytes = max_attachment_bytes
        self.anonymous_per_address = anonymous_per_address
        self.connect_timeout = connect_timeout
        self.connections: dict[str, ConnectionRecord] = {}
        self.anonymous: dict[str, int] = {}  # address -> open sessions with no namespace connected
        self._dispatch = self.eio.handlers["message"]
        self._connect = self.eio.handlers["connect"]
        self._disconnect = self.eio.handlers["disconnect"]
        self.eio.on("connect", self.on_connect)
        self.eio.on("message", self.on_message)
        self.eio.on("disconnect", self.on_disconnect)

    def admits_handshake(self, environ) -> bool:
        """Whether the client at this address may open one more Engine.IO session."""
        if self.anonymous_per_address <= 0:
            return True
        return self.anonymous.get(environ.get("REMOTE_ADDR") or "?", 0) < self.anonymous_per_address

    def on_connect(self, eio_sid, environ, *args):
        record = ConnectionRecord(address=environ.get("REMOTE_ADDR") or "?")
        self.connections[eio_sid] = record
        self.anonymous[record.address] = self.anonymous.get(record.address, 0) + 1
        if self.connect_timeout > 0:
            self._start_expiry(eio_sid, record)
        return self._connect(eio_sid, environ, *args)

    def on_disconnect(self, eio_sid, *args):
        record = self.connections.pop(eio_sid, None)
        if record is not None:
            self._signed_in(record)
        return self._disconnect(eio_sid, *args)

    def _signed_in(self, record: ConnectionRecord) -> None:
        if not record.anonymous:
            return
        record.anonymous = False
        if record.expiry is not None:
            record.expiry.close()
            record.expiry = None
        left = self.anonymous.get(record.address, 1) - 1
        if left > 0:
            self.anonymous[record.address] = left
        else:
            self.anonymous.pop(record.address, None)

    def _start_expiry(self, eio_sid: str, record: ConnectionRecord) -> None:
        """Socket.IO's connect timeout: a session nobody signs in on is closed, not kept until it stops pinging.

        Under gevent a libev timer waits (a few hundred bytes, stopped as soon as a namespace
        connects) instead of a greenlet asleep for the whole timeout, which every connection
        held, with its stacks, for its first 30 seconds.
        """
        if self.eio.async_mode == "gevent":
            import gevent

            record.expiry = gevent.get_hub().loop.timer(self.connect_timeout)
            record.expiry.start(self._expiry_due, eio_sid, record)
        else:
            self.server.start_background_task(self._expire_after_timeout, eio_sid, record)

    def _expiry_due(self, eio_sid: str, record: ConnectionRecord) -> None:
        """In the hub: closing runs the disconnect handlers, so it gets a greenlet of its own."""
        import gevent

        if record.expiry is not None:
            record.expiry.close()
            record.expiry = None
        if record.anonymous:
            gevent.spawn(self._expire_if_anonymous, eio_sid, record)

    def _expire_after_timeout(self, eio_sid: str, record: ConnectionRecord) -> None:
        self.server.sleep(self.connect_timeout)
        self._expire_if_anonymous(eio_sid, record)

    def _expire_if_anonymous(self, eio_sid: str, record: ConnectionRecord) -> None:
        if record.anonymous and self.connections.get(eio_sid) is record:
            close_connection(self.eio, eio_sid, "no namespace connected in time")

    def on_message(self, eio_sid, data):
        record = self.connections.get(eio_sid)
        if record is None:
            record = self.connections[eio_sid] = ConnectionRecord(address="?")
        if record.closing:
            return
        pending = self.server._binary_packet.get(eio_sid)
        try:
            if pending is not None:
                if isinstance(data, str):
                    raise BadPacket("text where a binary attachment was due", fatal=True)
                record.attachment_bytes += len(data)
                if record.attachment_bytes > self.max_attachment_bytes:
                    raise BadPacket("binary attachments too large", fatal=True)
            elif isinstance(data, bytes | bytearray):
                raise BadPacket("a binary attachment that no packet announced", fatal=True)
            elif not isinstance(data, str) or not data:
                # Engine.IO hands over whatever parsed as JSON after its "4", and "" for nothing.
                raise BadPacket("not a Socket.IO packet", fatal=True)
            else:
                record.attachment_bytes = 0
            self._dispatch(eio_sid, data)
            if record.anonymous and data[:1] == "0" and self._connected(eio_sid, data):
                self._signed_in(record)
        except BadPacket as bad:
            self._refuse(eio_sid, record, bad, data)
        except ValueError as error:
            # python-socketio's own refusals: a binary packet for a namespace not connected, and the like.
            self._refuse(eio_sid, record, BadPacket(str(error) or "unexpected packet", fatal=True), data)
        except Exception:
            if eio_sid not in self.server.environ:
                # The connection was closed while its packet was handled (a worker stopping, say).
                log.debug("Engine.IO connection %s closed while a packet was handled", eio_sid)
                return
            self._note(record, eio_sid, "error handling a packet", data, exc_info=True)

    def _refuse(self, eio_sid: str, record: ConnectionRecord, bad: BadPacket, data) -> None:
        record.bad_packets += 1
        too_many = record.bad_packets > self.max_bad_packets
        if not bad.fatal and not too_many and bad.ack_id is not None and self._answer_invalid(eio_sid, bad):
            self._note(record, eio_sid, bad.reason, data)
            return
        # Nothing can be answered (or the client does not stop): silence would leave it waiting.
        reason = "too many malformed packets" if too_many else bad.reason
        record.closing = True
        self._note(record, eio_sid, f"closed: {reason}", data)
        self.server._binary_packet.pop(eio_sid, None)
        close_connection(self.eio, eio_sid, reason)

    def _connected(self, eio_sid: str, connect_packet: str) -> bool:
        """Whether the CONNECT packet just handled left its namespace connected."""
        match = HEADER.fullmatch(connect_packet)
        namespace = (match["namespace"] or "/").rstrip(",").split("?", 1)[0] or "/" if match else "/"
        return bool(self.server.manager.sid_from_eio_sid(eio_sid, namespace))

    def _answer_invalid(self, eio_sid: str, bad: BadPacket) -> bool:
        namespace = bad.namespace or "/"
        if not self.server.manager.sid_from_eio_sid(eio_sid, namespace):
            return False
        answer = {"ok": False, "error": {"code": "invalid", "message": bad.reason}}
        self.server._send_packet(
            eio_sid, self.server.packet_class(sio_packet.ACK, namespace=namespace, id=bad.ack_id, data=[answer])
        )
        return True

    def _note(self, record: ConnectionRecord, eio_sid: str, what: str, data, *, exc_info=False) -> None:
        """One line per connection, a few a minute in all."""
        if record.logged:
            return
        record.logged = True
        if not log_budget.allow():
            return
        log.warning(
            "Engine.IO connection %s from %s: %s (%s)",
            eio_sid,
            record.address,
            what,
            packet_outline(data),
            exc_info=exc_info,
        )


def packet_outline(data) -> str:
    """What a log line may tell of a packet: its Socket.IO header (type, attachments, namespace,
    ack id) and its size. Never its JSON, which may hold a message body or a token."""
    if not isinstance(data, str):
        return f"<{len(data)} bytes>"
    header = re.match(r"[^\[{\"]{0,40}", data)
    head = header.group() if header else ""
    return f"{head!r} and {len(data) - len(head)} more characters"


def install(sio_server, **limits) -> PacketGuard:
    sio_server.packet_class = StrictPacket
    return PacketGuard(sio_server, **limits)
