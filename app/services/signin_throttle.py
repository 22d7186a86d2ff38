"""Sign-in throttling: too many failed sign-ins per account or per address answer ``rate_limited``.

Only failures count. An attempt is counted as a failure while it is being checked and
forgotten again if it succeeds, so a burst of parallel guesses cannot slip past the limit
while the first ones are still hashing.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque

from app.errors import ServiceError
from app.models import User
from app.services import users, validation


class SignInThrottled(ServiceError):
    """Too many failed sign-ins; ``retry_after`` says in how many seconds the next one is let through."""

    def __init__(self, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "rate_limited",
            f"too many failed sign-ins: try again in {describe_wait(self.retry_after)}",
        )


def describe_wait(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class FailureLog:
    """Failed attempts per key within a sliding window."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds

    def begin(self, key: str, limit: int) -> tuple[str | None, float]:
        """Count an attempt as failed unless ``limit`` failures are already in the window.

        Returns (a mark to forget the attempt by, 0) or (None, seconds until one expires).
        """
        raise NotImplementedError

    def forget(self, key: str, mark: str) -> None:
        """The attempt marked ``mark`` succeeded: it does not count."""
        raise NotImplementedError


class MemoryFailureLog(FailureLog):
    MAX_KEYS = 100_000

    def __init__(self, window_seconds: float, clock=time.monotonic) -> None:
        super().__init__(window_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts: dict[str, deque[tuple[float, str]]] = {}

    def begin(self, key: str, limit: int) -> tuple[str | None, float]:
        now = self._clock()
        with self._lock:
            attempts = self._attempts.setdefault(key, deque())
            while attempts and attempts[0][0] <= now - self.window:
                attempts.popleft()
            if len(attempts) >= limit:
                # The attempt that must expire before the count drops under the limit.
                return None, attempts[len(attempts) - limit][0] + self.window - now
            mark = uuid.uuid4().hex
            attempts.append((now, mark))
            if len(self._attempts) > self.MAX_KEYS:
                self._forget_idle(now)
            return mark, 0.0

    def forget(self, key: str, mark: str) -> None:
        with self._lock:
            attempts = self._attempts.get(key)
            if attempts is None:
                return
            for entry in attempts:
                if entry[1] == mark:
                    attempts.remove(entry)
                    break

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, at in self._attempts.items() if not at or at[-1][0] <= now - self.window]:
            del self._attempts[key]


class SignInThrottle:
    """Counts failed sign-ins per account (case-insensitive name) and per client address."""

    def __init__(self, log: FailureLog, *, per_account: int, per_address: int) -> None:
        self.log = log
        self.per_account = per_account
        self.per_address = per_address

    def authenticate(self, username, password, address: str | None) -> User:
        """``users.authenticate`` behind the limits: refused with SignInThrottled once over either."""
        held: list[tuple[str, str]] = []
        keys = []
        if isinstance(username, str) and validation.USERNAME_RE.fullmatch(username):
            keys.append((f"account:{username.lower()}", self.per_account))
        if address:
            keys.append((f"address:{address}", self.per_address))
        try:
            for key, limit in keys:
                if limit <= 0:
                    continue
                mark, retry_after = self.log.begin(key, limit)
                if mark is None:
                    raise SignInThrottled(retry_after)
                held.append((key, mark))
            user = users.authenticate(username, password)
        except SignInThrottled:
            self._forget(held)
            raise
        except ServiceError as error:
            if error.code != "unauthorized":
                # A banned account's right password is not a guess.
                self._forget(held)
            raise
        except Exception:
            self._forget(held)
            raise
        self._forget(held)
        return user

    def _forget(self, held: list[tuple[str, str]]) -> None:
        for key, mark in held:
            self.log.forget(key, mark)
