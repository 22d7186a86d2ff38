"""Messages and changes a client has sent but the server has not yet acknowledged, kept in sending order."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

# Refusals worth trying again with the same client_id: they say nothing about the message itself.
RETRYABLE_CODES = frozenset({"rate_limited", "internal", "unauthorized"})
RETRY_DELAY_SECONDS = 0.25
RETRY_DELAY_MAX_SECONDS = 5.0
# Events that store a new message: each carries a client_id, so a retry is stored once.
POSTS = frozenset({"message", "dm"})


class MessageRejected(Exception):
    """The server refused a message or a change for good (``invalid``, ``forbidden``, ``muted``...)."""

    def __init__(self, error: dict) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.error = error


def new_client_id() -> str:
    return uuid.uuid4().hex


@dataclass(eq=False)
class OutgoingMessage:
    """One ``message`` or ``dm`` event, identified by its client_id for every attempt, or one
    ``edit``, ``delete`` or ``react``, which the server applies once however often it is sent
    (the same body, the same reaction, change nothing the second time)."""

    event: str
    payload: dict
    message: dict | None = None
    error: dict | None = None
    attempts: int = 0
    not_before: float = 0.0
    # Why the last attempt did not settle it (a passing refusal, a lost or missing answer).
    last_failure: str | None = None
    settled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def client_id(self) -> str | None:
        return self.payload.get("client_id")

    def wait(self, timeout: float) -> dict:
        """The stored MESSAGE once acknowledged; raises MessageRejected or TimeoutError."""
        if not self.settled.wait(timeout):
            raise TimeoutError(
                f"{self.event} {self.client_id or self.payload.get('id')} not acknowledged within {timeout}s"
                f" after {self.attempts} attempts (last: {self.last_failure})"
            )
        if self.error is not None:
            raise MessageRejected(self.error)
        assert self.message is not None
        return self.message


class Outbox:
    """Pending messages and changes, first in first out; only the head is ever in flight.

    One at a time keeps a sender's messages and changes in the order they were sent:
    the server handles each event in its own greenlet, so two in flight at once
    could be committed in either order.
    """

    def __init__(self) -> None:
        self._pending: deque[OutgoingMessage] = deque()
        # client_id -> stored MESSAGE, for every acknowledged `message` and `dm`.
        self.acked: dict[str, dict] = {}
        self.rejected: list[OutgoingMessage] = []

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self) -> list[OutgoingMessage]:
        return list(self._pending)

    def add(self, event: str, payload: dict) -> OutgoingMessage:
        if event in POSTS:
            payload = {**payload, "client_id": payload.get("client_id") or new_client_id()}
        item = OutgoingMessage(event, payload)
        self._pending.append(item)
        return item

    def head(self) -> OutgoingMessage | None:
        return self._pending[0] if self._pending else None

    def ready_in(self, now: float) -> float | None:
        """Seconds until the head may be sent (0 when it may go now); None when empty."""
        head = self.head()
        return None if head is None else max(0.0, head.not_before - now)

    def settle(self, item: OutgoingMessage, ack: dict) -> None:
        """Apply the server's answer to ``item``: stored, refused for good, or to be retried."""
        if ack.get("ok"):
            item.message = ack["message"]
            if item.event in POSTS:
                self.acked[item.payload["client_id"]] = item.message
            self._remove(item)
        elif ack.get("error", {}).get("code") in RETRYABLE_CODES:
            item.last_failure = f"{ack['error'].get('code')}: {ack['error'].get('message')}"
            self.postpone(item)
        else:
            item.error = ack.get("error") or {"code": "internal", "message": f"malformed ack {ack!r}"}
            self.rejected.append(item)
            self._remove(item)

    def postpone(self, item: OutgoingMessage) -> None:
        delay = min(RETRY_DELAY_SECONDS * 2 ** (item.attempts - 1), RETRY_DELAY_MAX_SECONDS)
        item.not_before = time.monotonic() + delay

    def _remove(self, item: OutgoingMessage) -> None:
        if self._pending and self._pending[0] is item:
            self._pending.popleft()
        item.settled.set()
