"""Socket.IO namespaces and the shared state they use."""

from flask import Flask
from flask_socketio import SocketIO

from app.services.notifier import EXTENSION_KEY
from app.services.presence import MemoryPresenceStore
from app.services.ratelimit import MemoryRateLimiter


def init_namespaces(app: Flask, socketio: SocketIO) -> None:
    from app.sockets.admin import AdminNamespace
    from app.sockets.chat import ChatNamespace
    from app.sockets.notifier import SocketNotifier

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
    socketio.on_namespace(
        ChatNamespace("/", presence=presence, limiter=limiter, room_creation_limiter=room_creation_limiter)
    )
    socketio.on_namespace(AdminNamespace("/admin", presence=presence))
