"""Sliding-window rate limits per user (in memory or in Redis), and token buckets for socket events."""

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


class TokenBuckets:
    """One token bucket per key, in this process: ``capacity`` tokens, refilled at ``refill_per_second``.

    Cheap enough to run before every socket event; a key nobody used for a while is a full
    bucket again and is dropped.
    """

    MAX_KEYS = 100_000

    def __init__(self, capacity: float, refill_per_second: float, clock=time.monotonic) -> None:
        self.capacity = capacity
        self.refill = refill_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when last counted)

    def take(self, key: str, cost: float = 1) -> bool:
        """Spend ``cost`` tokens of ``key``'s bucket; False (spending nothing) when it holds fewer."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill)
            allowed = tokens >= cost
            self._buckets[key] = (tokens - cost if allowed else tokens, now)
            if len(self._buckets) > self.MAX_KEYS:
                self._forget_full(now)
            return allowed

    def forget(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def _forget_full(self, now: float) -> None:
        for key, (tokens, then) in list(self._buckets.items()):
            if self.refill <= 0 or tokens + (now - then) * self.refill >= self.capacity:
                del self._buckets[key]
