"""Tools for delivery tests: seeded accounts, a TCP proxy that drops connections, the stored truth."""

from __future__ import annotations

import contextlib
import gc
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from app.client import OutgoingMessage, SwitchboardClient

PASSWORD = "correct horse battery"

# python-engineio's client does not close the websocket it opened when the connection drops
# between the websocket handshake and the Engine.IO open (or upgrade probe) answer; dropping
# connections at random lands there now and then. Tests that do so ignore this one warning
# and collect garbage before they end, so the leaked sockets are finalised under the filter.
ENGINEIO_LEAKED_WEBSOCKET = "ignore:unclosed <socket.socket:ResourceWarning"
THREADS_END_SECONDS = 10


def close_and_collect(clients, proxies=(), threads_before: set[threading.Thread] | None = None) -> None:
    """Close clients and proxies, wait for the threads they started, then collect their garbage.

    python-engineio's client leaves a dropped websocket for the garbage collector. Collected here,
    inside the test and under its ENGINEIO_LEAKED_WEBSOCKET filter, instead of at some later moment
    (another test, or the end of the session) where the warning would fail the run at random.
    """
    for client in clients:
        client.close()
    for proxy in proxies:
        proxy.close()
    deadline = time.monotonic() + THREADS_END_SECONDS
    known = threads_before or {threading.main_thread()}
    for thread in threading.enumerate():
        if thread not in known and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0))
    gc.collect()


@dataclass(frozen=True)
class Account:
    user: dict
    token: str

    @property
    def username(self) -> str:
        return self.user["username"]


def seed_accounts(
    server, count: int, *, prefix: str, rooms: tuple[str, ...] | Callable[[int], tuple[str, ...]] = ()
) -> list[Account]:
    """Create users in the live server's database with the app's own services, members of ``rooms``
    (or of ``rooms(index)`` for the index-th user).

    Registering through the API would spend seconds of the server's CPU on password hashes;
    tokens are issued with the server's secret key, as ``POST /api/token`` would.
    """
    from app import create_app
    from app.config import TestingConfig
    from app.extensions import db
    from app.services import rooms as room_service
    from app.services import users

    config = type("SeedConfig", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": server.database_url})
    app = create_app(config)
    secret = server.env()["SECRET_KEY"]
    accounts = []
    with app.app_context():
        for index in range(count):
            user = users.register_user(f"{prefix}{index:03d}", PASSWORD)
            for room in rooms(index) if callable(rooms) else rooms:
                room_service.join_room(user.id, room)
            token = users.issue_token(user, secret, 3600)["token"]
            accounts.append(Account(user=user.to_dict(), token=token))
        db.session.remove()
        db.engine.dispose()
    return accounts


def seed_messages(server, sender: Account, room: str, count: int) -> None:
    """Store ``count`` messages from ``sender`` in ``room`` in one ordered write transaction."""
    from app import create_app
    from app.config import TestingConfig
    from app.database import write_transaction
    from app.extensions import db
    from app.models import Message, Room, utcnow
    from app.services import messages

    config = type("SeedConfig", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": server.database_url})
    app = create_app(config)
    with app.app_context():
        with write_transaction(ordered=True) as session:
            room_id = session.scalar(sa.select(Room.id).where(Room.name == room))
            first_rev = messages.next_rev(session)
            session.execute(
                sa.insert(Message),
                [
                    {
                        "room_id": room_id,
                        "sender_id": sender.user["id"],
                        "body": f"seeded #{n:04d}",
                        "client_id": f"seeded-{n}",
                        "created_at": utcnow(),
                        "rev": first_rev + n,
                    }
                    for n in range(count)
                ],
            )
        db.session.remove()
        db.engine.dispose()


def stored_messages(database_url: str) -> list[dict]:
    """Every stored message, oldest first, as the server itself renders it (``Message.to_dict()``,
    reactions and rev included), read from the database with ``sender`` as the username."""
    from app import create_app
    from app.config import TestingConfig
    from app.extensions import db
    from app.models import Message

    config = type("ReadConfig", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": database_url})
    app = create_app(config)
    with app.app_context():
        try:
            stored = [message.to_dict() for message in db.session.scalars(sa.select(Message).order_by(Message.id))]
        finally:
            db.session.remove()
            db.engine.dispose()
    return [{**message, "sender": message["sender"]["username"]} for message in stored]


def essentials(messages: list[dict]) -> list[tuple]:
    """The fields a client view and the database must agree on, in order: who sent what where,
    and the message's final state (body, deletion, edit time, reactions, rev)."""
    return [
        (
            m["id"],
            m["room"],
            m["sender"] if isinstance(m["sender"], str) else m["sender"]["username"],
            m["client_id"],
            m["body"],
            m["deleted"],
            m["edited_at"],
            tuple((r["emoji"], r["count"], tuple(r["users"])) for r in m["reactions"]),
            m["rev"],
        )
        for m in messages
    ]


def converged(client: SwitchboardClient, expected: list[tuple], room: str) -> bool:
    return essentials(client.room_messages(room)) == expected


def assert_all_converge(clients, database_url: str, room: str, timeout: float, context: str = "") -> list[tuple]:
    """Wait for every client's view of ``room`` to equal the database message by message, final
    state included; returns that view."""
    expected = essentials([row for row in stored_messages(database_url) if row["room"] == room])
    for client in clients:
        if not client.wait_for(lambda c=client: converged(c, expected, room), timeout):
            held = {m[0]: m for m in essentials(client.room_messages(room))}
            differences = [(m, held.get(m[0])) for m in expected if held.get(m[0]) != m]
            raise AssertionError(
                f"a client never converged{context}: {len(held)} of {len(expected)} messages,"
                f" {len(differences)} differ, first (stored, held): {differences[:3]}"
            )
    return expected


class ScriptedUser:
    """One client's part in a convergence test, on a thread of its own, while connections drop.

    It sends ``count`` messages in batches of ``batch`` (the same for every user of a test); once
    a batch is acknowledged it edits the batch's third message and (again) the previous batch's,
    edits the sixth, reacts to it and deletes it, and reacts to two messages of the others
    (sometimes taking a reaction back). So edits, deletions and reactions interleave with the
    sends of every client. Only sixth messages are ever deleted and nobody else touches them, so
    no change is refused.
    """

    EMOJI = ("👍", "🎉", "👀")

    def __init__(
        self, client: SwitchboardClient, username: str, room: str, count: int, *, seed: int, wait: float, batch: int
    ):
        self.client, self.username, self.room, self.count, self.wait = client, username, room, count, wait
        self.batch = batch
        self.rng = random.Random(seed)
        self.sent: list[OutgoingMessage] = []
        self.final_body: dict[str, str] = {}  # client_id -> the body the message must end with
        self.changes: list[dict] = []  # the acknowledged MESSAGE of every edit, deletion and reaction
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"script-{username}", daemon=True)

    def start(self) -> ScriptedUser:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.username}'s script still running after {timeout}s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            self._script()
        except BaseException as exc:  # re-raised by join() on the test's thread
            self.error = exc

    @staticmethod
    def _number(message: dict) -> int | None:
        found = re.search(r"#(\d{3})", message["body"])
        return int(found.group(1)) if found else None

    def _edit(self, message: dict, suffix: str) -> None:
        body = f"{self.username} #{self._number(message):03d} {suffix}"
        self.changes.append(self.client.edit(message["id"], body, timeout=self.wait))
        self.final_body[message["client_id"]] = body

    def _react(self, message_id: int, emoji: str, active: bool) -> None:
        self.changes.append(self.client.react(message_id, emoji, active, timeout=self.wait))

    def _script(self) -> None:
        previous: list[dict] = []
        reacted: list[tuple[int, str]] = []
        for first in range(0, self.count, self.batch):
            items = [
                self.client.send(self.room, f"{self.username} #{n:03d}")
                for n in range(first, min(first + self.batch, self.count))
            ]
            for item in items:
                self.sent.append(item)
                self.final_body[item.client_id] = item.payload["body"]
            batch = [item.wait(self.wait) for item in items]
            if len(batch) > 2:
                self._edit(batch[2], "edited")
            if len(previous) > 2:
                self._edit(previous[2], "edited again")
            if len(batch) > 5:
                doomed = batch[5]
                self._edit(doomed, "edited before its deletion")
                self._react(doomed["id"], self.rng.choice(self.EMOJI), True)
                self.changes.append(self.client.delete(doomed["id"], timeout=self.wait))
                self.final_body[doomed["client_id"]] = ""
            others = [
                m
                for m in self.client.room_messages(self.room)
                if m["sender"]["username"] != self.username
                and not m["deleted"]
                and self._number(m) is not None
                and self._number(m) % self.batch != 5
            ]
            for message in self.rng.sample(others, min(2, len(others))):
                emoji = self.rng.choice(self.EMOJI)
                self._react(message["id"], emoji, True)
                reacted.append((message["id"], emoji))
            if reacted and self.rng.random() < 0.3:
                message_id, emoji = reacted.pop(self.rng.randrange(len(reacted)))
                self._react(message_id, emoji, False)
            previous = batch


class DroppingProxy:
    """A TCP proxy in front of the server for one client: ``drop()`` cuts every connection
    it carries at once, mid-stream, the way a lost network does. New connections go through
    unless ``refusing`` (the network is down); while ``swallowing``, what the server sends is
    lost on the way (requests arrive and are handled, their answers never do)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.drops = 0
        self.refusing = False
        self.swallowing = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            for sock in (downstream, upstream):
                # Without it, Nagle's algorithm and delayed acks hold each small HTTP write ~40 ms.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    downstream.close()
                    upstream.close()
                    return
                self._sockets.update((downstream, upstream))
            for source, sink, answers in ((downstream, upstream, False), (upstream, downstream, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (answers and self.swallowing):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def drop(self) -> None:
        with self._lock:
            victims = list(self._sockets)
            self._sockets.clear()
            self.drops += 1
        for sock in victims:
            with contextlib.suppress(OSError):
                # Linger 0: the close resets the connection instead of finishing it politely.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self.drop()
