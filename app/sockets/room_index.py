"""Each socket's rooms, indexed, so that a disconnect costs what the socket's own rooms cost.

python-socketio keeps rooms as ``rooms[namespace][room] = {sid: eio_sid}`` and nothing else, so
its ``basic_disconnect`` copies the namespace's whole room table and asks every room whether the
socket is in it. Every socket has a room of its own and every user one more, so on a worker with
10,000 sockets one disconnect tested about 11,000 rooms (several milliseconds of the worker's only
core), and closing every socket at once (a shutdown, the message queue's catch-up after a Redis
outage) cost the square of that.

``RoomIndex`` keeps, next to python-socketio's table, the rooms of each (namespace, sid), updated
by the same ``basic_enter_room`` and ``basic_leave_room`` every join, leave, close and disconnect
goes through, and a disconnect leaves just those rooms. The rest of the disconnect (the socket's
pending acks, the pending connect and disconnect lists) is python-socketio's.

``check_room_index_internals()`` stops the start if python-socketio changes what this mirrors.
"""

from __future__ import annotations

import hashlib
import inspect

import socketio
from socketio.base_manager import BaseManager

# The sources of python-socketio 5.18.1's BaseManager methods this index mirrors (enter, leave)
# or replaces (disconnect): a release that changes any of them must be reviewed against this module.
MIRRORED_SOURCES_SHA256 = {
    "basic_disconnect": "2933b50bc4b2ea7b4367a84e05c2e22c52fed98b00afc3b88d06d61ab9fb9aa1",
    "basic_enter_room": "3f509586d2d7f47ec92cc5113a80f5302ca1d82fb3689ee530edd3aa9ad6a1a3",
    "basic_leave_room": "e27f3eea06d1c6a6ea295e99f62477330af4779e1f1853753e94f309ef0e74f2",
}


class RoomIndex:
    """A python-socketio manager mixin (it goes first in the bases): ``rooms_of[sid]`` lists the rooms
    the socket is in, in the order it joined them, ``None`` (the namespace's connected list) and its
    sid room included. A sid names one socket in one namespace (python-socketio keys acks by it too)."""

    rooms: dict
    callbacks: dict
    pending_connect: dict
    pending_disconnect: dict

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A list, the smallest container for the few rooms of a socket (every idle socket keeps one).
        self.rooms_of: dict[str, list] = {}

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        joined = self.rooms_of.get(sid)
        if joined is None:
            self.rooms_of[sid] = [room]
        elif room not in joined:
            joined.append(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        joined = self.rooms_of.get(sid)
        if joined is not None and room in joined:
            joined.remove(room)
            if not joined:
                del self.rooms_of[sid]

    def basic_disconnect(self, sid, namespace, **kwargs):
        """``BaseManager.basic_disconnect``, leaving the socket's indexed rooms instead of testing every room."""
        if namespace not in self.rooms:
            return
        for room in list(self.rooms_of.get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        self.rooms_of.pop(sid, None)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):
        """The rooms the socket is in, as ``BaseManager.get_rooms`` answers, from the index."""
        return [room for room in self.rooms_of.get(sid, ()) if room is not None]


class IndexedManager(RoomIndex, socketio.Manager):
    """python-socketio's in-process manager with the room index."""


def check_room_index_internals() -> None:
    """Fail at start-up if python-socketio's room bookkeeping is no longer what RoomIndex mirrors."""
    problems = []
    for name, expected in MIRRORED_SOURCES_SHA256.items():
        method = getattr(BaseManager, name, None)
        try:
            source = inspect.getsource(method) if method is not None else ""
        except (OSError, TypeError):
            source = ""
        if hashlib.sha256(source.encode()).hexdigest() != expected:
            problems.append(f"BaseManager.{name} changed")
    if problems:
        raise RuntimeError(
            "python-socketio changed under the room index (app/sockets/room_index.py): "
            + "; ".join(problems)
            + ". Pin the version in requirements.txt or update RoomIndex."
        )
