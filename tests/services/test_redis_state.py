"""Presence and rate limits in a real Redis, with several stores standing in for several workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from app.services.presence import SocketInfo
from app.services.ratelimit import MemoryRateLimiter
from app.services.redis_state import RedisPresenceStore, RedisRateLimiter, redis_client
from tests.support import components

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_conn():
    client = redis_client(components.redis_url())
    yield client
    client.close()


@pytest.fixture
def prefix(redis_conn):
    name = components.unique_name("sbtest")
    yield name
    leftover = list(redis_conn.scan_iter(f"{name}:*"))
    if leftover:
        redis_conn.delete(*leftover)


@dataclass
class Worker:
    """One store as one worker process would hold it, with the presence changes it reported."""

    store: RedisPresenceStore
    changes: list[tuple[int, bool]] = field(default_factory=list)


def never_started(*args, **kwargs):
    """A background-task starter that starts nothing: the worker never heartbeats, as if it hung or died."""
    return None


@pytest.fixture
def make_worker(redis_conn, prefix):
    workers: list[Worker] = []

    def make(**options) -> Worker:
        changes: list[tuple[int, bool]] = []
        store = RedisPresenceStore(
            redis_conn,
            prefix,
            presence_changed=lambda user, online: changes.append((user["id"], online)),
            **options,
        )
        worker = Worker(store, changes)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.store.close()


def socket(sid: str, user_id: int, rooms=("general",), transport="polling") -> SocketInfo:
    return SocketInfo(
        sid=sid,
        user={"id": user_id, "username": f"user{user_id}", "is_admin": False},
        transport=transport,
        connected_at="2024-01-01T00:00:00Z",
        rooms=list(rooms),
    )


def wait_until_expired(redis_conn, key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while redis_conn.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.05)


def alive_key(worker: Worker) -> str:
    return f"{worker.store.prefix}:alive:{worker.store.worker_id}"


# -- the PresenceStore interface ---------------------------------------------------


def test_first_and_last_socket_of_a_user_across_workers(make_worker):
    a, b = make_worker(), make_worker()
    assert a.store.add(socket("s1", 1)) is True
    assert b.store.add(socket("s2", 1)) is False
    assert a.store.add(socket("s3", 2)) is True

    info, last = a.store.remove("s1")
    assert info is not None and info.sid == "s1" and last is False
    info, last = a.store.remove("s2")  # a socket of the other worker
    assert info.sid == "s2" and last is True
    assert a.store.remove("s2") == (None, False)
    assert b.store.online_user_ids() == {2}


def test_readers_see_every_workers_sockets(make_worker):
    a, b = make_worker(), make_worker()
    a.store.add(socket("a1", 1, rooms=["general", "dev"], transport="websocket"))
    b.store.add(socket("b1", 1))
    b.store.add(socket("b2", 2))

    for reader in (a.store, b.store):
        assert reader.sids_of(1) == ["a1", "b1"]
        assert reader.sids_of(3) == []
        assert reader.online_user_ids() == {1, 2}
        assert sorted(info.sid for info in reader.all()) == ["a1", "b1", "b2"]
        fetched = reader.get("a1")
        assert fetched == socket("a1", 1, rooms=["general", "dev"], transport="websocket")
        assert reader.get("missing") is None
        assert reader.get(None) is None


def test_update_changes_a_socket_held_by_another_worker(make_worker):
    a, b = make_worker(), make_worker()
    a.store.add(socket("a1", 1))
    b.store.update("a1", rooms=["zeta", "alpha"])
    b.store.update("a1", transport="websocket")
    b.store.update("missing", transport="websocket")
    info = a.store.get("a1")
    assert info.rooms == ["alpha", "zeta"]
    assert info.transport == "websocket"
    assert b.store.get("missing") is None


def test_concurrent_connects_and_disconnects_report_exactly_one_first_and_one_last(make_worker):
    workers = [make_worker() for _ in range(2)]
    sids = [f"sid{n}" for n in range(24)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        firsts = list(pool.map(lambda n: workers[n % 2].store.add(socket(sids[n], 7)), range(len(sids))))
    assert firsts.count(True) == 1
    assert workers[0].store.sids_of(7) == sorted(sids)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: workers[n % 2].store.remove(sids[n]), range(len(sids))))
    assert [last for _, last in results].count(True) == 1
    assert all(info is not None for info, _ in results)
    assert workers[1].store.online_user_ids() == set()


def test_keys_live_under_the_prefix_and_nothing_is_left_once_workers_close(make_worker, redis_conn, prefix):
    a, b = make_worker(), make_worker()
    a.store.add(socket("a1", 1))
    b.store.add(socket("b1", 2))
    assert redis_conn.exists(f"{prefix}:presence:sockets")
    a.store.remove("a1")
    a.store.close()
    b.store.close()
    assert list(redis_conn.scan_iter(f"{prefix}:*")) == []


# -- dead and stalled workers ---------------------------------------------------------


def test_sockets_of_a_worker_that_stopped_heartbeating_are_dropped_and_announced_once(make_worker, redis_conn):
    survivor = make_worker()
    doomed = make_worker(ttl_seconds=1, start_background_task=never_started)
    survivor.store.add(socket("s1", 1))
    doomed.store.add(socket("d1", 1))  # user 1 is also on the survivor: stays online
    doomed.store.add(socket("d2", 2))
    doomed.store.add(socket("d3", 2))
    assert survivor.store.online_user_ids() == {1, 2}

    wait_until_expired(redis_conn, alive_key(doomed))
    assert survivor.store.online_user_ids() == {1}
    assert survivor.store.sids_of(2) == []
    assert survivor.store.get("d1") is None
    assert [info.sid for info in survivor.store.all()] == ["s1"]
    assert survivor.changes == [(2, False)]
    assert doomed.changes == []


def test_heartbeat_of_a_live_worker_reaps_the_dead_without_any_reader(make_worker, redis_conn):
    survivor = make_worker()
    doomed = make_worker(ttl_seconds=1, start_background_task=never_started)
    doomed.store.add(socket("d1", 5))
    wait_until_expired(redis_conn, alive_key(doomed))
    survivor.store.heartbeat()
    assert survivor.changes == [(5, False)]
    survivor.store.heartbeat()
    assert survivor.changes == [(5, False)]


def test_a_worker_declared_dead_while_running_registers_its_sockets_again(make_worker, redis_conn):
    observer = make_worker()
    stalled = make_worker(ttl_seconds=1, start_background_task=never_started)
    stalled.store.add(socket("x1", 3))
    stalled.store.add(socket("x2", 4))
    wait_until_expired(redis_conn, alive_key(stalled))
    assert observer.store.online_user_ids() == set()
    assert sorted(observer.changes) == [(3, False), (4, False)]

    stalled.store.remove("x2")  # a disconnect while it was presumed dead
    stalled.store.heartbeat()
    assert observer.store.sids_of(3) == ["x1"]
    assert observer.store.online_user_ids() == {3}
    assert stalled.changes == [(3, True)]
    stalled.store.heartbeat()
    assert stalled.changes == [(3, True)]


def test_the_heartbeat_registers_sockets_again_after_redis_lost_its_data(make_worker, redis_conn, prefix):
    held = make_worker(start_background_task=never_started)
    observer = make_worker()
    held.store.add(socket("h1", 6))
    held.store.add(socket("h2", 6))
    redis_conn.delete(*redis_conn.scan_iter(f"{prefix}:*"))  # as after a Redis restart without persistence
    assert observer.store.online_user_ids() == set()

    held.store.heartbeat()
    assert observer.store.sids_of(6) == ["h1", "h2"]
    assert held.changes == [(6, True)]
    held.store.heartbeat()
    assert held.changes == [(6, True)]


def test_a_closing_worker_announces_its_users_offline(make_worker):
    a, b = make_worker(), make_worker()
    a.store.add(socket("a1", 1))
    a.store.add(socket("a2", 2))
    b.store.add(socket("b1", 2))
    a.store.close()
    assert a.changes == [(1, False)]
    assert b.store.online_user_ids() == {2}


def test_the_heartbeat_task_keeps_a_live_worker_registered(make_worker, redis_conn):
    started = threading.Event()

    def start(target, *args):
        started.set()
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    live = make_worker(ttl_seconds=1, start_background_task=start)
    observer = make_worker()
    live.store.add(socket("l1", 9))
    assert started.is_set()
    # Three TTLs: without the heartbeat the alive key would be long gone.
    for _ in range(30):
        time.sleep(0.1)
        assert redis_conn.exists(alive_key(live))
    assert observer.store.online_user_ids() == {9}
    assert observer.changes == []


# -- rate limits -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def limiter_factory(request, redis_conn, prefix):
    def make(limit: int, window: float, clock):
        if request.param == "memory":
            return MemoryRateLimiter(limit, window, clock)
        return RedisRateLimiter(redis_conn, prefix, limit, window, clock)

    return make


def test_sliding_window_behaves_like_the_memory_limiter(limiter_factory):
    clock = FakeClock()
    limiter = limiter_factory(3, 10.0, clock)
    assert [limiter.hit("k") for _ in range(3)] == [True, True, True]
    clock.now += 5
    assert limiter.hit("k") is False  # refused, and counted
    assert limiter.hit("other") is True
    clock.now += 4.999
    assert limiter.hit("k") is False
    clock.now += 0.001  # the first three leave the window; the two refused hits stay in it
    assert limiter.hit("k") is True
    assert limiter.hit("k") is False


def test_the_limit_is_shared_by_every_worker(redis_conn, prefix):
    workers = [RedisRateLimiter(redis_conn, prefix, 20, 10.0) for _ in range(2)]
    allowed = [workers[n % 2].hit("send:1") for n in range(20)]
    assert allowed == [True] * 20
    assert workers[0].hit("send:1") is False
    assert workers[1].hit("send:1") is False
    assert workers[1].hit("send:2") is True


def test_concurrent_hits_admit_exactly_the_limit(redis_conn, prefix):
    workers = [RedisRateLimiter(redis_conn, prefix, 20, 10.0) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(lambda n: workers[n % 2].hit("send:3"), range(50)))
    assert allowed.count(True) == 20


def test_rate_limit_keys_are_prefixed_and_expire(redis_conn, prefix):
    limiter = RedisRateLimiter(redis_conn, prefix, 5, 10.0)
    limiter.hit("send:4")
    ttl = redis_conn.pttl(f"{prefix}:ratelimit:send:4")
    assert 0 < ttl <= 11_000
