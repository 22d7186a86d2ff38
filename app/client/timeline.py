"""What a client has received: every MESSAGE once, ordered by id, and where the next sync starts."""

from __future__ import annotations


class Timeline:
    """Messages merged by id from acks, live events, join answers and sync pages.

    ``cursor`` only moves with sync pages. A sync page is complete up to its last id
    (ids commit in order), but live events are not: two messages committed together
    may be emitted in either order, and a connection can drop between the two emits.
    Starting the next sync after the highest *live* id could skip the other one.
    """

    def __init__(self, cursor: int = 0) -> None:
        self.cursor = cursor
        self.duplicates_dropped = 0
        self._by_id: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, message_id: int) -> bool:
        return message_id in self._by_id

    def merge(self, message: dict) -> bool:
        """Keep one copy per id; True when the message was new.

        A later copy replaces the kept one only to carry a deletion, the one change
        a stored message can undergo.
        """
        message_id = message["id"]
        kept = self._by_id.get(message_id)
        if kept is None:
            self._by_id[message_id] = message
            return True
        self.duplicates_dropped += 1
        if message.get("deleted") and not kept.get("deleted"):
            self._by_id[message_id] = message
        return False

    def advance(self, synced_up_to: int) -> None:
        self.cursor = max(self.cursor, synced_up_to)

    def mark_deleted(self, message_id: int) -> None:
        kept = self._by_id.get(message_id)
        if kept is not None:
            self._by_id[message_id] = {**kept, "deleted": True, "body": ""}

    def messages(self) -> list[dict]:
        return [self._by_id[message_id] for message_id in sorted(self._by_id)]

    def room(self, name: str) -> list[dict]:
        return [m for m in self.messages() if m["room"] == name]

    def direct(self, username: str) -> list[dict]:
        """The direct conversation with ``username`` (both directions)."""
        wanted = username.lower()
        return [
            m
            for m in self.messages()
            if m["room"] is None
            and wanted in {m["sender"]["username"].lower(), (m["recipient"] or {}).get("username", "").lower()}
        ]
