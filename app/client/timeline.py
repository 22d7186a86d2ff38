"""What a client has received: the latest version of every MESSAGE, by id, and where the next sync starts."""

from __future__ import annotations


def version(message: dict) -> tuple[bool, int]:
    """How recent a copy of a message is: a deletion is final, otherwise the higher ``rev`` is newer.

    Nothing changes a message after its deletion (edits and reactions to it are refused), so a
    deleted copy is newer than any copy that is not, even one whose ``rev`` is unknown (a
    ``message_deleted`` event carries none).
    """
    return bool(message.get("deleted")), message.get("rev") or 0


class Timeline:
    """Messages merged by id from acks, live events, join answers and sync pages.

    Each id keeps the copy with the highest ``version()``; a copy replaces the kept one whole,
    reactions included, so an older copy arriving late (a live event overtaken by a sync page,
    say) never undoes a newer change.

    ``cursor`` is the rev the next ``sync {"after_rev"}`` starts after, and it only moves to the
    end of a sync page. A sync page is complete up to its last rev (revs become visible in
    order), but live events are not: two changes committed together may be emitted in either
    order, and a connection can drop between the two emits. Starting the next sync after the
    highest *live* rev could skip the other change.
    """

    def __init__(self, cursor: int = 0) -> None:
        self.cursor = cursor
        self.duplicates_dropped = 0
        self.updates_applied = 0
        self._by_id: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, message_id: int) -> bool:
        return message_id in self._by_id

    def get(self, message_id: int) -> dict | None:
        return self._by_id.get(message_id)

    def merge(self, message: dict) -> bool:
        """Keep the newest copy per id; True when the id was new.

        A copy of a known id replaces the kept one only when its version is higher; an equal or
        older copy is dropped as a duplicate.
        """
        message_id = message["id"]
        kept = self._by_id.get(message_id)
        if kept is None:
            self._by_id[message_id] = message
            return True
        if version(message) > version(kept):
            self._by_id[message_id] = message
            self.updates_applied += 1
        else:
            self.duplicates_dropped += 1
        return False

    def advance(self, synced_up_to: int) -> None:
        """Move the cursor to the rev a sync page answered (never back)."""
        self.cursor = max(self.cursor, synced_up_to)

    def mark_deleted(self, message_id: int) -> None:
        """Apply a ``message_deleted`` event. The copy keeps its rev until the deletion's own
        MESSAGE (``message_updated`` or a sync page) brings the rev of the deletion."""
        kept = self._by_id.get(message_id)
        if kept is not None and not kept.get("deleted"):
            self._by_id[message_id] = {
                **kept,
                "deleted": True,
                "body": "",
                "reactions": [],
                "mentions": [],
                "attachments": [],
            }

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
