"""Password hashing off the gevent hub, so one sign-in's scrypt does not stall every other connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, has_app_context

T = TypeVar("T")

_pool_lock = threading.Lock()
_pool = None


def _gevent_active() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("threading")


def _threadpool(size: int):
    """A small pool of real threads of this process's own; hashlib releases the GIL while it hashes."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from gevent.threadpool import ThreadPool

            _pool = ThreadPool(maxsize=size)
        return _pool


def off_hub(function: Callable[..., T], *args) -> T:
    """Call ``function(*args)`` in a bounded thread pool when running under gevent, else directly.

    The calling greenlet waits; the others keep running. The Flask context goes along, so
    the function may read the app's configuration.
    """
    if not _gevent_active():
        return function(*args)
    size = current_app.config.get("PASSWORD_HASH_THREADS", 4) if has_app_context() else 4
    if has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxy's target

        def call():
            with app.app_context():
                return function(*args)
    else:

        def call():
            return function(*args)

    return _threadpool(size).apply(call)
