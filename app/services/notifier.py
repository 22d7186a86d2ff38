"""How actions publish their consequences: one small interface, a Socket.IO implementation, a recorder for tests.

A service action checks its rules, writes and commits, and only then tells the notifier what
happened (Zulip's ``send_event_on_commit``). The Socket.IO implementation
(``app.sockets.notifier.SocketNotifier``) crosses workers through the message queue; tests
plug in ``RecordingNotifier`` and assert on what an action published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import current_app

EXTENSION_KEY = "switchboard.notifier"


def room_key(name: str) -> str:
    """Socket.IO room of a chat room; prefixed so it can never collide with `user:<id>`."""
    return f"room:{name}"


def user_key(user_id: int) -> str:
    """Socket.IO room holding every `/` socket of one user."""
    return f"user:{user_id}"


class Notifier:
    """Interface. ``skip_sid`` leaves out the socket that acted: it learns of its action through the ack."""

    def to_room(self, room: str, event: str, data: dict, *, skip_sid: str | list[str] | None = None) -> None:
        raise NotImplementedError

    def to_users(
        self, user_ids: Iterable[int], event: str, data: dict, *, skip_sid: str | list[str] | None = None
    ) -> None:
        raise NotImplementedError

    def to_sid(self, sid: str, event: str, data: dict) -> None:
        raise NotImplementedError

    def to_everyone(self, event: str, data: dict) -> None:
        raise NotImplementedError

    def join_user(self, user_id: int, room: str) -> None:
        """Put every socket of the user, on every worker, into the chat room."""
        raise NotImplementedError

    def leave_user(self, user_id: int, room: str) -> None:
        raise NotImplementedError

    def disconnect_user(self, user_id: int, reason: str) -> None:
        """Send `kicked` to every `/` and `/admin` socket of the user, on every worker, and disconnect them."""
        raise NotImplementedError

    def disconnect_sid(self, sid: str, reason: str) -> None:
        raise NotImplementedError


@dataclass
class Published:
    method: str
    target: object
    event: str | None = None
    data: dict | None = None
    skip_sid: str | list[str] | None = None


@dataclass
class RecordingNotifier(Notifier):
    """Keeps every publication in order, for tests."""

    published: list[Published] = field(default_factory=list)

    def to_room(self, room, event, data, *, skip_sid=None):
        self.published.append(Published("to_room", room, event, data, skip_sid))

    def to_users(self, user_ids, event, data, *, skip_sid=None):
        self.published.append(Published("to_users", sorted(set(user_ids)), event, data, skip_sid))

    def to_sid(self, sid, event, data):
        self.published.append(Published("to_sid", sid, event, data))

    def to_everyone(self, event, data):
        self.published.append(Published("to_everyone", None, event, data))

    def join_user(self, user_id, room):
        self.published.append(Published("join_user", (user_id, room)))

    def leave_user(self, user_id, room):
        self.published.append(Published("leave_user", (user_id, room)))

    def disconnect_user(self, user_id, reason):
        self.published.append(Published("disconnect_user", user_id, "kicked", {"reason": reason}))

    def disconnect_sid(self, sid, reason):
        self.published.append(Published("disconnect_sid", sid, "kicked", {"reason": reason}))

    def events(self, event: str | None = None) -> list[Published]:
        return [p for p in self.published if event is None or p.event == event]

    def clear(self) -> None:
        self.published.clear()


class NullNotifier(Notifier):
    """For an app without sockets (the CLI): actions still commit; nobody is connected to tell."""

    def to_room(self, room, event, data, *, skip_sid=None):
        pass

    def to_users(self, user_ids, event, data, *, skip_sid=None):
        pass

    def to_sid(self, sid, event, data):
        pass

    def to_everyone(self, event, data):
        pass

    def join_user(self, user_id, room):
        pass

    def leave_user(self, user_id, room):
        pass

    def disconnect_user(self, user_id, reason):
        pass

    def disconnect_sid(self, sid, reason):
        pass


def notifier() -> Notifier:
    return current_app.extensions.get(EXTENSION_KEY) or NullNotifier()
