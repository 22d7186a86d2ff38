"""SwitchboardClient: a threaded Socket.IO client that delivers exactly once, for bots and tests.

It runs python-socketio's threaded ``Client`` with its own reconnection, and adds:

* an outbox: every ``send`` gets a client_id and stays pending until the server
  acknowledges it; after a reconnect the pending messages are sent again, in order,
  with the same client_ids, so the server stores each once;
* edits, deletions and reactions go through the same outbox, in order with the sends,
  and are sent again after a reconnect until acknowledged (the server applies each once);
* catch-up by rev: after every connect it pages through ``sync {"after_rev"}`` from its
  rev cursor and keeps, per message id, the copy with the highest rev, so live events
  that arrive meanwhile are not shown twice and every change made while it was away
  (an edit, a deletion, a reaction) reaches its view;
* a connection that looks up but leaves a request unanswered for ``ack_timeout`` is
  replaced by a new one, since python-engineio does not always notice a dead transport.

Event handlers run on python-socketio's reader thread and only record what arrived;
every request (sync, sends) is made from one delivery thread of its own, because a
request waiting for its ack on the reader thread would wait for ever.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import requests
import socketio

from app.client.outbox import MessageRejected, Outbox, OutgoingMessage
from app.client.timeline import Timeline


class ConnectionLost(Exception):
    """A request could not be answered on the current connection (not connected, dropped, no ack)."""


class NoAnswer(ConnectionLost):
    """A request went unanswered for ``ack_timeout`` on a connection that still looked up."""


class RequestFailed(Exception):
    """The server answered a request with ``{"ok": false, "error": ...}``."""

    def __init__(self, error: dict) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.error = error


def request_token(url: str, username: str, password: str, timeout: float = 10.0) -> dict:
    """``POST /api/token``: returns ``{"token", "expires_at", "user"}``."""
    response = requests.post(
        f"{url.rstrip('/')}/api/token",
        json={"username": username, "password": password},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RequestFailed(response.json().get("error", {"code": "internal", "message": response.text}))
    return response.json()


# python-socketio's reconnection that has been down this long while python-engineio counts itself
# connected is stuck for good (see _reconnection_stuck); checked this often while down.
STUCK_AFTER_SECONDS = 15.0
STUCK_CHECK_SECONDS = 1.0


class SwitchboardClient:
    """One user's connection to the ``/`` namespace.

    ``transports`` is python-socketio's list (``["websocket"]``, ``["polling"]``, or None
    for polling upgraded to websocket). ``after_rev`` is the rev to catch up from on the
    first connect: 0 fetches everything the user may read.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transports: list[str] | None = None,
        after_rev: int = 0,
        ack_timeout: float = 10.0,
        reconnection_delay: float = 0.2,
        reconnection_delay_max: float = 2.0,
    ) -> None:
        self.url = url
        self.token = token
        self.transports = transports
        self.ack_timeout = ack_timeout
        self._socket_options = {
            "reconnection": True,
            "reconnection_attempts": 0,
            "reconnection_delay": reconnection_delay,
            "reconnection_delay_max": reconnection_delay_max,
            "randomization_factor": min(0.5, reconnection_delay / 2),
            "handle_sigint": False,
        }
        self.user: dict | None = None
        self.sid: str | None = None
        self.connections = 0
        self.transports_used: list[str] = []
        self.announcements: list[dict] = []
        # Copies from sync pages that replaced an older version held (changes made while away).
        self.changes_caught_up = 0
        # Why the server last refused the connection ("unauthorized", "banned"), if it did.
        self.refusal: str | None = None
        self._timeline = Timeline(after_rev)
        self._outbox = Outbox()
        self._lock = threading.Condition(threading.RLock())
        self._connected = False
        # When the connection last dropped, while it stays down.
        self._down_since: float | None = None
        self._synced = False
        self._closed = False
        self._generation = 0
        self._worker: threading.Thread | None = None
        # Connections replaced because they stopped answering (see _reconnect_afresh).
        self.replaced_connections = 0
        self.sio = self._new_socket()

    # -- lifecycle ------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> SwitchboardClient:
        """Open the first connection (raises socketio's ConnectionError when it fails) and wait
        until it has caught up; later drops are handled by python-socketio's reconnection, and a
        connection that stops answering is replaced."""
        self._worker = threading.Thread(target=self._deliver, name="switchboard-client", daemon=True)
        self._worker.start()
        try:
            self.sio.connect(
                self.url,
                auth={"token": self.token},
                transports=self.transports,
                wait_timeout=timeout,
            )
            self.wait_synced(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self._retire(self.sio)

    @classmethod
    def _retire(cls, sio: socketio.Client) -> None:
        cls._shut(sio)
        cls._release(sio)
        if cls._stop_reconnecting(sio):
            cls._shut(sio)
            cls._release(sio)

    @staticmethod
    def _stop_reconnecting(sio: socketio.Client) -> bool:
        """End a reconnection that a drop started just before ``reconnection`` was turned off.

        python-socketio's reconnection loop never reads ``reconnection`` again: left alone, it
        retries for the life of the process (or reconnects). Its abort event is cleared when the
        loop starts, so it is set until the loop has ended. True if it had reconnected meanwhile.
        """
        task = getattr(sio, "_reconnect_task", None)
        abort = getattr(sio, "_reconnect_abort", None)
        for _ in range(100):
            if task is None or abort is None or not task.is_alive():
                break
            abort.set()
            task.join(timeout=0.1)
        return sio.connected

    @staticmethod
    def _release(sio: socketio.Client) -> None:
        """Close what python-engineio keeps after a disconnect: a transport thread that was still
        running can open a new HTTP session after the reset, and nothing else would close its
        pooled connections (their sockets would be finalised whenever the client is collected)."""
        eio = sio.eio
        for task in (eio.read_loop_task, eio.write_loop_task):
            if isinstance(task, threading.Thread):
                task.join(timeout=5)
        with contextlib.suppress(Exception):
            if eio.http is not None:
                eio.http.close()
        with contextlib.suppress(Exception):
            if eio.ws is not None:
                eio.ws.close()

    @staticmethod
    def _shut(sio: socketio.Client) -> None:
        """Disconnect ``sio`` for good.

        ``shutdown()`` alone can leave it connected: a reconnection attempt already under way
        when it is called still completes. Without reconnection it stays down. The disconnects
        wait for the transport's threads (an aborted one can open a new HTTP session after the
        reset, which nothing would ever close).
        """
        sio.reconnection = False
        for _ in range(3):
            sio.shutdown()
            if sio.eio.state == "connected" and not sio.connected:
                sio.eio.disconnect()  # Engine.IO is up, the namespace connect was still under way
            if sio.eio.state == "disconnected":
                return
            time.sleep(0.1)

    def use_transports(self, transports: list[str] | None) -> None:
        """Transports for the next reconnection (a fallback to ``["polling"]``, say)."""
        self.sio.connection_transports = transports

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def transport(self) -> str | None:
        return self.sio.transport() if self._connected else None

    # -- sending ----------------------------------------------------------------

    def send(self, room: str, body: str, client_id: str | None = None) -> OutgoingMessage:
        return self._enqueue("message", {"room": room, "body": body, "client_id": client_id})

    def send_dm(self, to_user: str, body: str, client_id: str | None = None) -> OutgoingMessage:
        return self._enqueue("dm", {"to_user": to_user, "body": body, "client_id": client_id})

    def edit(self, message_id: int, body: str, timeout: float = 30.0) -> dict:
        """Replace the body of one's own message; returns the acknowledged MESSAGE."""
        return self._change("edit", {"id": message_id, "body": body}, timeout)

    def delete(self, message_id: int, timeout: float = 30.0) -> dict:
        """Delete one's own message; returns the acknowledged (deleted) MESSAGE."""
        return self._change("delete", {"id": message_id}, timeout)

    def react(self, message_id: int, emoji: str, active: bool = True, timeout: float = 30.0) -> dict:
        """Add (``active``) or take back one's ``emoji`` on a message; returns the acknowledged MESSAGE."""
        return self._change("react", {"id": message_id, "emoji": emoji, "active": active}, timeout)

    def _change(self, event: str, payload: dict, timeout: float) -> dict:
        """Queue a change behind everything sent before it and wait for its ack, across reconnects.

        Raises MessageRejected for a final refusal and TimeoutError when no ack came in time
        (the change then stays queued and may still be applied). Not for event handlers.
        """
        return self._enqueue(event, payload).wait(timeout)

    def _enqueue(self, event: str, payload: dict) -> OutgoingMessage:
        with self._lock:
            if self._closed:
                raise ConnectionLost("the client is closed")
            item = self._outbox.add(event, payload)
            self._lock.notify_all()
        return item

    def flush(self, timeout: float) -> None:
        """Wait until every message and change sent so far is acknowledged or refused."""
        if not self.wait_for(lambda: len(self._outbox) == 0, timeout):
            raise TimeoutError(f"{len(self._outbox)} messages still pending after {timeout}s")

    def call(self, event: str, payload: dict, timeout: float | None = None) -> dict:
        """One request on the current connection; returns the ack without its ``ok``.

        Raises RequestFailed for an error ack and ConnectionLost when no answer comes.
        Not for use inside event handlers (they run on the thread that reads the answer).
        """
        ack = self._request(event, payload, timeout or self.ack_timeout)
        if not ack.get("ok"):
            raise RequestFailed(ack.get("error") or {"code": "internal", "message": repr(ack)})
        return {key: value for key, value in ack.items() if key != "ok"}

    def join(self, room: str) -> dict:
        """Join (or create) a room; its recent messages join the timeline. Returns the ROOM."""
        answer = self.call("join", {"room": room})
        with self._lock:
            for message in answer["messages"]:
                self._timeline.merge(message)
            self._lock.notify_all()
        return answer["room"]

    # -- what the client holds ----------------------------------------------------

    def messages(self) -> list[dict]:
        with self._lock:
            return self._timeline.messages()

    def room_messages(self, room: str) -> list[dict]:
        with self._lock:
            return self._timeline.room(room)

    def dm_messages(self, username: str) -> list[dict]:
        with self._lock:
            return self._timeline.direct(username)

    @property
    def acked(self) -> dict[str, dict]:
        """client_id -> stored MESSAGE, for every message the server acknowledged."""
        with self._lock:
            return dict(self._outbox.acked)

    @property
    def pending(self) -> list[OutgoingMessage]:
        with self._lock:
            return self._outbox.pending()

    @property
    def rejected(self) -> list[OutgoingMessage]:
        with self._lock:
            return list(self._outbox.rejected)

    @property
    def cursor(self) -> int:
        """The rev the next catch-up starts after."""
        return self._timeline.cursor

    @property
    def duplicates_dropped(self) -> int:
        """Copies merged that were not newer than the one held (a live message that sync brought again)."""
        return self._timeline.duplicates_dropped

    @property
    def updates_applied(self) -> int:
        """Copies merged that replaced an older version of a held message (an edit, a deletion, a reaction)."""
        return self._timeline.updates_applied

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked whenever the client's state changes)."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    def wait_synced(self, timeout: float) -> None:
        """Wait until connected and caught up on the current connection."""
        if not self.wait_for(lambda: self._connected and self._synced, timeout):
            raise TimeoutError(f"not connected and caught up after {timeout}s")

    # -- Socket.IO events (reader thread: record and notify, never wait) -----------

    def _new_socket(self) -> socketio.Client:
        """A python-socketio client with this client's handlers. Connection events of a socket
        that has been replaced are ignored; what it still delivers merges harmlessly."""
        sio = socketio.Client(**self._socket_options)

        def current(handler):
            def handle(*args):
                if sio is self.sio:
                    handler(*args)

            return handle

        sio.on("connect", current(self._on_connect))
        sio.on("disconnect", current(self._on_disconnect))
        sio.on("connect_error", current(self._on_connect_error))
        sio.on("session", current(self._on_session))
        sio.on("message", self._on_message)
        sio.on("dm", self._on_message)
        sio.on("message_updated", self._on_message)
        sio.on("message_deleted", self._on_message_deleted)
        sio.on("announcement", self._on_announcement)
        return sio

    def _on_connect(self) -> None:
        with self._lock:
            self._generation += 1
            self.connections += 1
            self.transports_used.append(self.sio.transport())
            self._connected = True
            self._down_since = None
            self._synced = False
            self._lock.notify_all()

    def _on_disconnect(self, reason=None) -> None:
        with self._lock:
            self._connected = False
            self._down_since = time.monotonic()
            self._lock.notify_all()

    def _on_connect_error(self, data=None) -> None:
        with self._lock:
            self.refusal = data.get("message") if isinstance(data, dict) else data
            self._lock.notify_all()

    def _on_session(self, data: dict) -> None:
        with self._lock:
            self.user, self.sid = data.get("user"), data.get("sid")
            self._lock.notify_all()

    def _on_message(self, message: dict) -> None:
        with self._lock:
            self._timeline.merge(message)
            self._lock.notify_all()

    def _on_message_deleted(self, data: dict) -> None:
        with self._lock:
            message_id = data.get("id")
            if isinstance(message_id, int):
                self._timeline.mark_deleted(message_id)
            self._lock.notify_all()

    def _on_announcement(self, data: dict) -> None:
        with self._lock:
            self.announcements.append(data)
            self._lock.notify_all()

    # -- the delivery thread --------------------------------------------------------

    def _request(self, event: str, payload: dict, timeout: float) -> dict:
        """Emit one event and wait for its ack on this connection."""
        answer: list = []
        with self._lock:
            if not self._connected or self._closed:
                raise ConnectionLost("not connected")
            generation = self._generation

        def on_ack(*args) -> None:
            with self._lock:
                answer.append(args[0] if args else None)
                self._lock.notify_all()

        try:
            self.sio.emit(event, payload, callback=on_ack)
        except socketio.exceptions.SocketIOError as error:
            raise ConnectionLost(str(error)) from None
        deadline = time.monotonic() + timeout
        with self._lock:
            while not answer:
                remaining = deadline - time.monotonic()
                if self._generation != generation or not self._connected or self._closed:
                    # The ack is lost with its connection; whatever was asked may still have happened.
                    raise ConnectionLost(f"the connection ended before the answer to {event}")
                if remaining <= 0:
                    raise NoAnswer(f"no answer to {event} within {timeout:g}s")
                self._lock.wait(remaining)
        if not isinstance(answer[0], dict):
            return {"ok": False, "error": {"code": "internal", "message": f"malformed ack {answer[0]!r}"}}
        return answer[0]

    def _deliver(self) -> None:
        """Catch up after every connect, then send the outbox head by head."""
        while True:
            with self._lock:
                stuck = False
                while True:
                    if self._closed:
                        return
                    ready_in = self._outbox.ready_in(time.monotonic())
                    if self._connected and (not self._synced or ready_in == 0):
                        break
                    if not self._connected and self._reconnection_stuck():
                        stuck = True
                        break
                    self._lock.wait(ready_in if self._connected and ready_in else STUCK_CHECK_SECONDS)
                generation = self._generation
                head = None if not self._synced else self._outbox.head()
            if stuck:
                self._reconnect_afresh()
                continue
            try:
                if head is None:
                    self._catch_up(generation)
                else:
                    self._send(head)
            except NoAnswer:
                self._reconnect_afresh()
            except ConnectionLost:
                # The next connect starts over: catch up again, then resend the head.
                continue

    def _reconnection_stuck(self) -> bool:
        """Whether python-socketio's reconnection can no longer succeed: it has been down a while,
        yet python-engineio still counts itself connected (a connect that failed half-way left it
        so), and every attempt is refused with "not in a disconnected state"."""
        down_since = self._down_since
        return (
            down_since is not None
            and time.monotonic() - down_since > STUCK_AFTER_SECONDS
            and self.sio.eio.state == "connected"
            and not self.sio.connected
        )

    def _reconnect_afresh(self) -> None:
        """Replace a connection that looks up but answers nothing, or whose reconnection is stuck,
        and connect again.

        python-engineio can be left with a transport that neither answers nor fails (a drop
        during a reconnection can leave the Socket.IO client connected over a closed Engine.IO
        connection, which then discards whatever is sent and never reconnects). Waiting does not
        help, so the connection is thrown away and a new one is opened. Nothing is lost either
        way: the catch-up and the outbox start over on the new connection.
        """
        old = self.sio
        with self._lock:
            if self._closed:
                return
            self.sio = self._new_socket()  # from now on `old`'s connection events are ignored
            self._connected = False
            self._down_since = None
            self.replaced_connections += 1
            self._lock.notify_all()
        # Shut on a thread of its own: waiting for a transport that hangs must not hold up the new one.
        threading.Thread(target=self._retire, args=(old,), name="switchboard-client-shut", daemon=True).start()
        delay = self._socket_options["reconnection_delay"]
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                self.sio.connect(
                    self.url,
                    auth={"token": self.token},
                    transports=old.connection_transports,
                    wait_timeout=self.ack_timeout,
                )
            except socketio.exceptions.ConnectionError:
                time.sleep(delay)
                delay = min(delay * 2, self._socket_options["reconnection_delay_max"])
                continue
            with self._lock:
                closed = self._closed
            if closed:  # close() came while connecting
                self._shut(self.sio)
            return

    def _catch_up(self, generation: int) -> None:
        """Page through every change after the rev cursor, moving the cursor to each page's end."""
        while True:
            ack = self._request("sync", {"after_rev": self._timeline.cursor}, self.ack_timeout)
            if not ack.get("ok"):
                # Not a connection problem (the server refused sync): try again a little later.
                time.sleep(0.5)
                raise ConnectionLost(f"sync refused: {ack.get('error')}")
            with self._lock:
                if generation != self._generation:
                    raise ConnectionLost("reconnected while catching up")
                applied = self._timeline.updates_applied
                for message in ack["messages"]:
                    self._timeline.merge(message)
                self.changes_caught_up += self._timeline.updates_applied - applied
                if ack["messages"]:
                    self._timeline.advance(ack["rev"])
                if not ack["has_more"] or not ack["messages"]:
                    self._synced = True
                    self._lock.notify_all()
                    return
                self._lock.notify_all()

    def _send(self, item: OutgoingMessage) -> None:
        with self._lock:
            item.attempts += 1
            generation = self._generation
        try:
            ack = self._request(item.event, item.payload, self.ack_timeout)
        except ConnectionLost as lost:
            with self._lock:
                item.last_failure = str(lost)
                if self._connected and not self._closed:
                    # Connected but unanswered: a stalled transport, replaced before the retry.
                    self._outbox.postpone(item)
            raise
        if self._repeated_delete_not_found(item, ack):
            ack = self._deleted_meanwhile(item, ack, generation)
        with self._lock:
            self._outbox.settle(item, ack)
            if ack.get("ok"):
                self._timeline.merge(ack["message"])
            self._lock.notify_all()

    @staticmethod
    def _repeated_delete_not_found(item: OutgoingMessage, ack: dict) -> bool:
        return (
            item.event == "delete"
            and item.attempts > 1
            and not ack.get("ok")
            and (ack.get("error") or {}).get("code") == "not_found"
        )

    def _deleted_meanwhile(self, item: OutgoingMessage, ack: dict, generation: int) -> dict:
        """The answer to a repeated ``delete`` refused as ``not_found``.

        The server answers ``not_found`` for a message that is deleted already, so a repeat
        whose earlier attempt went through (its ack lost with the connection) is refused. A
        catch-up now brings the deletion if there was one: then the message is deleted, as
        asked, and the deleted MESSAGE is the answer. Otherwise the refusal stands.
        """
        self._catch_up(generation)
        with self._lock:
            held = self._timeline.get(item.payload["id"])
        if held is None or not held.get("deleted"):
            return ack
        return {"ok": True, "message": held}


__all__ = ["ConnectionLost", "MessageRejected", "RequestFailed", "SwitchboardClient", "request_token"]
