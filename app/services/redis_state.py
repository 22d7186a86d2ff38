"""Presence and rate limits in Redis, shared by every worker that uses the same REDIS_URL and REDIS_PREFIX.

Each worker registers under its own id with an ``alive`` key whose TTL a background
heartbeat refreshes. A worker that dies without saying goodbye (SIGKILL, OOM, lost
host) stops refreshing it; the next script any worker runs after the key expires
removes that worker's sockets in the same atomic step, and the users who thereby went
offline are reported once, through ``presence_changed``.

Every script takes the key prefix as ``ARGV[1]`` and builds its keys from it, so it
needs a single Redis node (or a sentinel pair), not Redis Cluster.

Keys under ``<prefix>:presence``:

- ``sockets``: hash sid -> JSON ``{"worker", "user_id", "info": SocketInfo}``
- ``user:<id>``: set of the user's sids; ``online``: set of user ids with at least one sid
- ``worker:<id>``: set of the worker's sids; ``workers``: set of registered worker ids
- ``room:<name>``: hash user id -> how many of the user's sockets are in that chat room, so a
  room's online count is one HLEN however many members it has
- ``alive:<id>``: present while the worker heartbeats
- ``admins``: hash `/admin` sid -> user id, so a ban disconnects an admin's dashboard on any worker

Each heartbeat also compares the sockets registered for its worker with the ones the
worker holds and mends any difference, so a worker declared dead while merely stalled,
or a Redis that lost its data, is repaired within one heartbeat.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

import redis

from app.services.presence import PresenceStore, SocketInfo
from app.services.ratelimit import RateLimiter
from app.services.signin_throttle import FailureLog

log = logging.getLogger("switchboard.redis_state")

UPDATE_ATTEMPTS = 20


def redis_client(url: str) -> redis.Redis:
    """One connection pool per process; str in, str out."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
    )


# Shared by every presence script: ARGV[1] is the key prefix (``<prefix>:presence``).
LUA_COMMON = """
local P = ARGV[1]
local SOCKETS = P .. ':sockets'
local ONLINE = P .. ':online'
local WORKERS = P .. ':workers'

-- Count the sockets of an entry in (delta 1) or out of (delta -1) each of its chat rooms.
local function move_rooms(raw, delta)
  local entry = cjson.decode(raw)
  local uid = string.format('%d', entry.user_id)
  local rooms = entry.info.rooms
  if type(rooms) ~= 'table' then return end
  for _, name in ipairs(rooms) do
    local key = P .. ':room:' .. name
    if redis.call('HINCRBY', key, uid, delta) <= 0 then
      redis.call('HDEL', key, uid)
    end
  end
end

-- Drop one socket; returns its entry and 1 when it was its user's last socket anywhere.
local function forget(sid)
  local raw = redis.call('HGET', SOCKETS, sid)
  if not raw then return false, 0 end
  local entry = cjson.decode(raw)
  local uid = string.format('%d', entry.user_id)
  move_rooms(raw, -1)
  redis.call('HDEL', SOCKETS, sid)
  redis.call('SREM', P .. ':worker:' .. entry.worker, sid)
  local user_sids = P .. ':user:' .. uid
  redis.call('SREM', user_sids, sid)
  if redis.call('SCARD', user_sids) == 0 then
    redis.call('SREM', ONLINE, uid)
    return raw, 1
  end
  return raw, 0
end

-- Register one socket; returns 1 when it is its user's first socket anywhere.
local function register(worker, sid, uid, raw)
  local previous = redis.call('HGET', SOCKETS, sid)
  if previous then
    redis.call('SREM', P .. ':worker:' .. cjson.decode(previous).worker, sid)
    move_rooms(previous, -1)
  end
  redis.call('HSET', SOCKETS, sid, raw)
  move_rooms(raw, 1)
  redis.call('SADD', P .. ':worker:' .. worker, sid)
  redis.call('SADD', ONLINE, uid)
  local user_sids = P .. ':user:' .. uid
  if redis.call('SADD', user_sids, sid) == 1 and redis.call('SCARD', user_sids) == 1 then
    return 1
  end
  return 0
end

local function keep_alive(worker, ttl_ms)
  redis.call('SET', P .. ':alive:' .. worker, '1', 'PX', ttl_ms)
  redis.call('SADD', WORKERS, worker)
end

-- Remove the sockets of every worker whose alive key expired; returns the entries of
-- sockets that were their user's last, so the caller can announce those users offline.
local function reap()
  local gone = {}
  for _, worker in ipairs(redis.call('SMEMBERS', WORKERS)) do
    if redis.call('EXISTS', P .. ':alive:' .. worker) == 0 then
      for _, sid in ipairs(redis.call('SMEMBERS', P .. ':worker:' .. worker)) do
        local raw, last = forget(sid)
        if raw and last == 1 then table.insert(gone, raw) end
      end
      redis.call('DEL', P .. ':worker:' .. worker)
      redis.call('SREM', WORKERS, worker)
    end
  end
  return gone
end
"""

# ARGV: prefix, worker, ttl_ms, sid, user id, entry JSON
LUA_ADD = (
    LUA_COMMON
    + """
keep_alive(ARGV[2], ARGV[3])
local gone = reap()
return {gone, register(ARGV[2], ARGV[4], ARGV[5], ARGV[6])}
"""
)

# ARGV: prefix, sid
LUA_REMOVE = (
    LUA_COMMON
    + """
local gone = reap()
local raw, last = forget(ARGV[2])
return {gone, raw or '', last}
"""
)

# ARGV: prefix, what, argument
LUA_READ = (
    LUA_COMMON
    + """
local gone = reap()
local what = ARGV[2]
if what == 'get' then
  return {gone, redis.call('HGET', SOCKETS, ARGV[3]) or ''}
elseif what == 'sids_of' then
  return {gone, redis.call('SMEMBERS', P .. ':user:' .. ARGV[3])}
elseif what == 'online' then
  return {gone, redis.call('SMEMBERS', ONLINE)}
elseif what == 'online_counts' then
  local counts = {}
  for _, name in ipairs(cjson.decode(ARGV[3])) do
    table.insert(counts, redis.call('HLEN', P .. ':room:' .. name))
  end
  return {gone, counts}
end
return {gone, redis.call('HVALS', SOCKETS)}
"""
)

# ARGV: prefix, worker, ttl_ms, how many sockets the worker holds.
# Also returns the worker's registered sids when their number differs from that.
LUA_HEARTBEAT = (
    LUA_COMMON
    + """
keep_alive(ARGV[2], ARGV[3])
local gone = reap()
local registered = P .. ':worker:' .. ARGV[2]
if redis.call('SCARD', registered) == tonumber(ARGV[4]) then
  return {gone, 0, {}}
end
return {gone, 1, redis.call('SMEMBERS', registered)}
"""
)

# ARGV: prefix, worker
LUA_RETIRE = (
    LUA_COMMON
    + """
redis.call('DEL', P .. ':alive:' .. ARGV[2])
return reap()
"""
)

# Compare-and-set of one socket entry. ARGV: prefix, sid, expected JSON, new JSON
LUA_REPLACE = (
    LUA_COMMON
    + """
local current = redis.call('HGET', SOCKETS, ARGV[2])
if not current then return -1 end
if current ~= ARGV[3] then return 0 end
move_rooms(current, -1)
redis.call('HSET', SOCKETS, ARGV[2], ARGV[4])
move_rooms(ARGV[4], 1)
return 1
"""
)


PresenceCallback = Callable[[dict, bool], None]


class RedisPresenceStore(PresenceStore):
    """The registry of `/` sockets of every worker, with first/last detection done atomically in Redis.

    ``presence_changed(user, online)`` is called for changes no socket event reports:
    users whose last socket was on a worker that died, and users whose sockets the
    heartbeat had to register again or remove.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        ttl_seconds: float = 30.0,
        start_background_task: Callable | None = None,
        sleep: Callable[[float], None] = time.sleep,
        presence_changed: PresenceCallback | None = None,
    ) -> None:
        self.client = client
        self.prefix = f"{prefix}:presence"
        self.ttl_ms = max(int(ttl_seconds * 1000), 1000)
        self.heartbeat_seconds = self.ttl_ms / 3000
        self.presence_changed = presence_changed
        self._start_background_task = start_background_task or _start_thread
        self._sleep = sleep
        self._add = client.register_script(LUA_ADD)
        self._remove = client.register_script(LUA_REMOVE)
        self._read = client.register_script(LUA_READ)
        self._heartbeat = client.register_script(LUA_HEARTBEAT)
        self._retire = client.register_script(LUA_RETIRE)
        self._replace = client.register_script(LUA_REPLACE)
        # This worker's own sockets: what each heartbeat makes Redis agree with.
        self._local: dict[str, SocketInfo] = {}
        self._heartbeat_lock = threading.Lock()
        self._heartbeat_task = None
        self._stopped = False
        self._pid: int | None = None
        self._worker_id = ""

    # -- identity and heartbeat -------------------------------------------------

    @property
    def worker_id(self) -> str:
        """Unique per process: an app built before a fork must not share its id with its children."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            self._local = {}
            self._heartbeat_task = None
        return self._worker_id

    def _ensure_heartbeat(self) -> None:
        worker = self.worker_id
        with self._heartbeat_lock:
            if self._heartbeat_task is not None or self._stopped:
                return
            self._heartbeat_task = self._start_background_task(self._heartbeat_loop, worker)
            atexit.register(self.close)

    def _heartbeat_loop(self, worker: str) -> None:
        while not self._stopped and worker == self.worker_id:
            self._sleep(self.heartbeat_seconds)
            if self._stopped:
                return
            try:
                self.heartbeat()
            except Exception:
                log.exception("presence heartbeat failed")

    def heartbeat(self) -> None:
        """Refresh this worker's alive key, reap dead workers, and mend this worker's registrations."""
        gone, differs, registered = self._heartbeat(args=[self.prefix, self.worker_id, self.ttl_ms, len(self._local)])
        self._announce_gone(gone)
        if int(differs):
            self._mend(set(registered))

    def _mend(self, registered: set[str]) -> None:
        """Make Redis hold exactly this worker's sockets again.

        add() records a socket here before registering it and remove() forgets it here
        first, so a socket held here but not registered was lost from Redis (this worker
        was reaped while stalled, or Redis lost its data), and one registered but not held
        here is a disconnect whose removal failed. First and last still come from Redis,
        atomically, so a user is announced once even while sockets come and go meanwhile.
        """
        missing = [info for sid, info in list(self._local.items()) if sid not in registered]
        if missing:
            log.warning("presence: registering %d sockets of worker %s again", len(missing), self.worker_id)
        for info in missing:
            if self._register(info):
                self._notify(info.user, True)
            if info.sid not in self._local:  # disconnected meanwhile: its removal found nothing to remove
                self._forget_and_announce(info.sid)
        for sid in registered - set(self._local):
            self._forget_and_announce(sid)

    def close(self) -> None:
        """Stop heartbeating and remove this worker's sockets, announcing users who go offline."""
        if self._stopped:
            return
        self._stopped = True
        if self._pid != os.getpid():
            return
        try:
            self._announce_gone(self._retire(args=[self.prefix, self.worker_id]))
        except Exception:
            log.exception("could not retire presence worker %s", self.worker_id)

    # -- helpers ------------------------------------------------------------------

    def _notify(self, user: dict, online: bool) -> None:
        if self.presence_changed is None:
            return
        try:
            self.presence_changed(user, online)
        except Exception:
            log.exception("presence_changed failed for user %s", user.get("id"))

    def _announce_gone(self, gone: list[str]) -> None:
        for raw in gone:
            self._notify(json.loads(raw)["info"]["user"], False)

    @staticmethod
    def _info(raw: str) -> SocketInfo:
        return SocketInfo(**json.loads(raw)["info"])

    def _entry(self, info: SocketInfo) -> str:
        return json.dumps({"worker": self.worker_id, "user_id": info.user_id, "info": info.to_dict()})

    def _register(self, info: SocketInfo) -> bool:
        gone, first = self._add(
            args=[self.prefix, self.worker_id, self.ttl_ms, info.sid, info.user_id, self._entry(info)]
        )
        self._announce_gone(gone)
        return bool(int(first))

    def _forget(self, sid: str) -> tuple[SocketInfo | None, bool]:
        gone, raw, last = self._remove(args=[self.prefix, sid])
        self._announce_gone(gone)
        return (self._info(raw) if raw else None), bool(int(last))

    def _forget_and_announce(self, sid: str) -> None:
        removed, last = self._forget(sid)
        if removed is not None and last:
            self._notify(removed.user, False)

    def _query(self, what: str, argument: str = ""):
        gone, result = self._read(args=[self.prefix, what, argument])
        self._announce_gone(gone)
        return result

    # -- PresenceStore ------------------------------------------------------------

    def add(self, info: SocketInfo) -> bool:
        self._ensure_heartbeat()
        self._local[info.sid] = info
        return self._register(info)

    def remove(self, sid: str) -> tuple[SocketInfo | None, bool]:
        if self._pid == os.getpid():
            self._local.pop(sid, None)
        return self._forget(sid)

    def get(self, sid: str) -> SocketInfo | None:
        if not isinstance(sid, str):
            return None
        raw = self._query("get", sid)
        if raw:
            return self._info(raw)
        # A socket of this worker that Redis lost (restarted empty, or this worker reaped while
        # stalled) keeps working until the next heartbeat registers it again.
        return self._local.get(sid) if self._pid == os.getpid() else None

    def sids_of(self, user_id: int) -> list[str]:
        return sorted(self._query("sids_of", str(int(user_id))))

    def online_user_ids(self) -> set[int]:
        return {int(user_id) for user_id in self._query("online")}

    def online_counts(self, rooms: list[str]) -> dict[str, int]:
        names = list(rooms)
        if not names:
            return {}
        counts = self._query("online_counts", json.dumps(names))
        return {name: int(count) for name, count in zip(names, counts, strict=True)}

    def all(self) -> list[SocketInfo]:
        return [self._info(raw) for raw in self._query("all")]

    def add_admin(self, sid: str, user_id: int) -> None:
        self.client.hset(f"{self.prefix}:admins", sid, int(user_id))

    def remove_admin(self, sid: str) -> None:
        self.client.hdel(f"{self.prefix}:admins", sid)

    def admin_sids_of(self, user_id: int) -> list[str]:
        # Admin sockets are few; a stale sid left by a killed worker costs one no-op disconnect.
        entries = self.client.hgetall(f"{self.prefix}:admins")
        return sorted(_text(sid) for sid, owner in entries.items() if int(owner) == int(user_id))

    def update(self, sid: str, *, transport: str | None = None, rooms: list[str] | None = None) -> None:
        """Change one socket's entry, whichever worker holds it, without losing a concurrent update."""
        for _ in range(UPDATE_ATTEMPTS):
            current = self.client.hget(f"{self.prefix}:sockets", sid)
            if current is None:
                return
            entry = json.loads(current)
            if transport is not None:
                entry["info"]["transport"] = transport
            if rooms is not None:
                entry["info"]["rooms"] = sorted(rooms)
            replaced = int(self._replace(args=[self.prefix, sid, current, json.dumps(entry)]))
            if replaced == -1:
                return
            if replaced == 1:
                # Changed in place, never re-inserted: a socket removed meanwhile must stay removed.
                held = self._local.get(sid) if self._pid == os.getpid() else None
                if held is not None:
                    held.transport = entry["info"]["transport"]
                    held.rooms = entry["info"]["rooms"]
                return
        log.warning("presence: gave up updating %s after %d concurrent changes", sid, UPDATE_ATTEMPTS)


def _start_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True, name="presence-heartbeat")
    thread.start()
    return thread


# ARGV: now in microseconds ('' = Redis server time), window in microseconds, limit, unique member
LUA_HIT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
if redis.call('ZCARD', KEYS[1]) <= tonumber(ARGV[3]) then return 1 end
return 0
"""


class RedisRateLimiter(RateLimiter):
    """A sliding window per key in one sorted set, checked and counted in one atomic script.

    Without a ``clock`` the window is measured with the Redis server's clock, which
    every worker shares; every hit counts, refused ones included, like MemoryRateLimiter.
    """

    def __init__(self, client: redis.Redis, prefix: str, limit: int, window_seconds: float, clock=None) -> None:
        super().__init__(limit, window_seconds, clock)
        self.client = client
        self.prefix = f"{prefix}:ratelimit"
        self._hit = client.register_script(LUA_HIT)

    def key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def hit(self, key: str) -> bool:
        now = "" if self._clock is None else str(int(self._clock() * 1_000_000))
        allowed = self._hit(
            keys=[self.key(key)],
            args=[now, int(self.window * 1_000_000), self.limit, uuid.uuid4().hex],
        )
        return bool(int(allowed))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


# KEYS[1]: the attempts of one key. ARGV: window in ms, limit, mark.
# Returns 0 when the attempt was counted, else the milliseconds until one attempt expires.
LUA_BEGIN_ATTEMPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return 0
"""


class RedisFailureLog(FailureLog):
    """Failed sign-ins in one sorted set per key, shared by every worker, timed by the Redis clock."""

    def __init__(self, client: redis.Redis, prefix: str, window_seconds: float) -> None:
        super().__init__(window_seconds)
        self.client = client
        self.prefix = f"{prefix}:signin"
        self._begin = client.register_script(LUA_BEGIN_ATTEMPT)

    def begin(self, key: str, limit: int) -> tuple[str | None, float]:
        mark = uuid.uuid4().hex
        wait_ms = int(self._begin(keys=[f"{self.prefix}:{key}"], args=[int(self.window * 1000), limit, mark]))
        return (mark, 0.0) if wait_ms == 0 else (None, wait_ms / 1000)

    def forget(self, key: str, mark: str) -> None:
        self.client.zrem(f"{self.prefix}:{key}", mark)
