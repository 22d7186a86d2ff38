"""Sliding-window rate limits per user, in memory or in Redis."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock

    def hit(self, key: str) -> bool:
        """Count one event for ``key``; True when it is within the limit."""
        raise NotImplementedError


class MemoryRateLimiter(RateLimiter):
    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic) -> None:
        super().__init__(limit, window_seconds, clock)
        self._lock = threading.Lock()
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            events.append(now)
            if len(self._events) > 10_000:
                self._forget_idle(now)
            return len(events) <= self.limit

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]:
            del self._events[key]
