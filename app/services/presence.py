"""The registry of connected `/` sockets behind presence, `who`, `sockets` and `stats`.

One interface, two stores: in process memory for a single worker, in Redis when
several workers share the load (``REDIS_URL``).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field


@dataclass
class SocketInfo:
    sid: str
    user: dict
    transport: str
    connected_at: str
    rooms: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        return self.user["id"]

    def to_dict(self) -> dict:
        return asdict(self)


class PresenceStore:
    """Interface: every method is safe to call from any greenlet or thread."""

    def add(self, info: SocketInfo) -> bool:
        """Register a socket; True when it is the user's first."""
        raise NotImplementedError

    def remove(self, sid: str) -> tuple[SocketInfo | None, bool]:
        """Forget a socket; returns its info and True when it was the user's last."""
        raise NotImplementedError

    def get(self, sid: str) -> SocketInfo | None:
        raise NotImplementedError

    def sids_of(self, user_id: int) -> list[str]:
        raise NotImplementedError

    def online_user_ids(self) -> set[int]:
        raise NotImplementedError

    def online_counts(self, rooms: list[str]) -> dict[str, int]:
        """How many distinct users have a socket in each of these chat rooms, without listing them."""
        raise NotImplementedError

    def all(self) -> list[SocketInfo]:
        raise NotImplementedError

    def update(self, sid: str, *, transport: str | None = None, rooms: list[str] | None = None) -> None:
        raise NotImplementedError

    # `/admin` sockets are not presence, but a ban must reach them on every worker.

    def add_admin(self, sid: str, user_id: int) -> None:
        raise NotImplementedError

    def remove_admin(self, sid: str) -> None:
        raise NotImplementedError

    def admin_sids_of(self, user_id: int) -> list[str]:
        raise NotImplementedError


class MemoryPresenceStore(PresenceStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[str, SocketInfo] = {}
        self._by_user: dict[int, set[str]] = {}
        # room -> user id -> how many of the user's sockets are in it
        self._room_users: dict[str, dict[int, int]] = {}
        self._admin_sockets: dict[str, int] = {}

    def _enter_rooms(self, info: SocketInfo) -> None:
        for name in info.rooms:
            users = self._room_users.setdefault(name, {})
            users[info.user_id] = users.get(info.user_id, 0) + 1

    def _exit_rooms(self, info: SocketInfo) -> None:
        for name in info.rooms:
            users = self._room_users.get(name)
            if users is None or info.user_id not in users:
                continue
            users[info.user_id] -= 1
            if users[info.user_id] <= 0:
                del users[info.user_id]
                if not users:
                    del self._room_users[name]

    def add(self, info: SocketInfo) -> bool:
        with self._lock:
            previous = self._sockets.get(info.sid)
            if previous is not None:
                self._exit_rooms(previous)
            self._sockets[info.sid] = info
            self._enter_rooms(info)
            sids = self._by_user.setdefault(info.user_id, set())
            first = not sids
            sids.add(info.sid)
            return first

    def remove(self, sid: str) -> tuple[SocketInfo | None, bool]:
        with self._lock:
            info = self._sockets.pop(sid, None)
            if info is None:
                return None, False
            self._exit_rooms(info)
            sids = self._by_user.get(info.user_id, set())
            sids.discard(sid)
            if not sids:
                self._by_user.pop(info.user_id, None)
                return info, True
            return info, False

    def get(self, sid: str) -> SocketInfo | None:
        return self._sockets.get(sid)

    def sids_of(self, user_id: int) -> list[str]:
        with self._lock:
            return sorted(self._by_user.get(user_id, ()))

    def online_user_ids(self) -> set[int]:
        with self._lock:
            return set(self._by_user)

    def online_counts(self, rooms: list[str]) -> dict[str, int]:
        with self._lock:
            return {name: len(self._room_users.get(name, ())) for name in rooms}

    def all(self) -> list[SocketInfo]:
        with self._lock:
            return list(self._sockets.values())

    def update(self, sid: str, *, transport: str | None = None, rooms: list[str] | None = None) -> None:
        with self._lock:
            info = self._sockets.get(sid)
            if info is None:
                return
            if transport is not None:
                info.transport = transport
            if rooms is not None:
                self._exit_rooms(info)
                info.rooms = sorted(rooms)
                self._enter_rooms(info)

    def add_admin(self, sid: str, user_id: int) -> None:
        with self._lock:
            self._admin_sockets[sid] = user_id

    def remove_admin(self, sid: str) -> None:
        with self._lock:
            self._admin_sockets.pop(sid, None)

    def admin_sids_of(self, user_id: int) -> list[str]:
        with self._lock:
            return sorted(sid for sid, owner in self._admin_sockets.items() if owner == user_id)
