"""Socket.IO namespaces and the shared state they use."""

from flask import Flask
from flask_socketio import SocketIO

from app.services.hot_cache import EXTENSION_KEY as HOT_CACHE_KEY
from app.services.hot_cache import HotCache
from app.services.notifier import EXTENSION_KEY
from app.services.presence import MemoryPresenceStore, PresenceStore
from app.services.ratelimit import MemoryRateLimiter, RateLimiter
from app.sockets.common import FloodGuard, FloodLimits


def connect_hot_cache(app: Flask, socketio: SocketIO) -> None:
    """Invalidations of the per-worker caches reach every worker through the message queue, if there is one."""
    from app.sockets.message_queue import CatchUpRedisManager

    cache = app.extensions[HOT_CACHE_KEY] = HotCache(app.config["HOT_CACHE_TTL_SECONDS"])
    manager = socketio.server.manager
    if isinstance(manager, CatchUpRedisManager):
        manager.on_invalidation = cache.apply
        manager.on_resubscribed = cache.clear
        app.extensions[HOT_CACHE_KEY + ".publish"] = manager.publish_invalidation


def init_namespaces(app: Flask, socketio: SocketIO) -> None:
    from app.sockets.admin import AdminNamespace
    from app.sockets.chat import ChatNamespace
    from app.sockets.notifier import SocketNotifier

    presence: PresenceStore
    limiter: RateLimiter
    room_creation_limiter: RateLimiter
    if app.config["REDIS_URL"]:
        from app.services.redis_state import (
            RedisPresenceStore,
            RedisRateLimiter,
            redis_client,
        )

        client = redis_client(app.config["REDIS_URL"])
        prefix = app.config["REDIS_PREFIX"]
        presence = RedisPresenceStore(
            client,
            prefix,
            ttl_seconds=app.config["PRESENCE_TTL_SECONDS"],
            start_background_task=socketio.start_background_task,
            sleep=socketio.sleep,
            # Users whose last socket was on a worker that died get their offline event from here.
            presence_changed=lambda user, online: socketio.emit(
                "presence", {"user": user, "online": online}, namespace="/"
            ),
        )
        limiter = RedisRateLimiter(
            client,
            prefix,
            app.config["RATE_LIMIT_COUNT"],
            app.config["RATE_LIMIT_WINDOW_SECONDS"],
        )
        room_creation_limiter = RedisRateLimiter(
            client,
            f"{prefix}:rooms",
            app.config["ROOM_CREATE_LIMIT"],
            app.config["ROOM_CREATE_WINDOW_SECONDS"],
        )
    else:
        presence = MemoryPresenceStore()
        limiter = MemoryRateLimiter(app.config["RATE_LIMIT_COUNT"], app.config["RATE_LIMIT_WINDOW_SECONDS"])
        room_creation_limiter = MemoryRateLimiter(
            app.config["ROOM_CREATE_LIMIT"], app.config["ROOM_CREATE_WINDOW_SECONDS"]
        )
    app.extensions["switchboard.presence"] = presence
    app.extensions["switchboard.rate_limiter"] = limiter
    app.extensions[EXTENSION_KEY] = SocketNotifier(socketio, presence)
    connect_hot_cache(app, socketio)
    flood_guard = FloodGuard(
        FloodLimits(
            socket_burst=app.config["SOCKET_EVENT_BURST"],
            socket_refill_per_second=app.config["SOCKET_EVENT_REFILL_PER_SECOND"],
            user_burst=app.config["USER_EVENT_BURST"],
            user_refill_per_second=app.config["USER_EVENT_REFILL_PER_SECOND"],
            refusals_before_disconnect=app.config["SOCKET_FLOOD_REFUSALS"],
            max_events_in_progress=app.config["SOCKET_MAX_EVENTS_IN_PROGRESS"],
        )
    )
    for namespace in (
        ChatNamespace("/", presence=presence, limiter=limiter, room_creation_limiter=room_creation_limiter),
        AdminNamespace("/admin", presence=presence),
    ):
        namespace.flood_guard = flood_guard
        socketio.on_namespace(namespace)
