"""Prometheus metrics: what the server counts, and the restricted ``/metrics`` endpoint that exposes them.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several gunicorn workers on one host) every worker
writes its values to files there and a scrape of any worker adds them up; the directory
must exist, be writable and be emptied before the server starts (gunicorn.conf.py does).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import prometheus_client
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from app.errors import error_body

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
SOCKET_REFRESH_SECONDS = 5

SOCKETS_CONNECTED = Gauge(
    "switchboard_sockets_connected",
    "Connected Socket.IO sockets, by namespace and transport",
    ["namespace", "transport"],
    multiprocess_mode="livesum",
)
SOCKET_CONNECTS = Counter(
    "switchboard_socket_connects",
    "Socket.IO connection attempts, by namespace and outcome (accepted or refused)",
    ["namespace", "outcome"],
)
SOCKET_EVENTS = Counter(
    "switchboard_socket_events",
    "Socket.IO events received by a handler, by namespace and event",
    ["namespace", "event"],
)
SOCKET_ACKS = Counter(
    "switchboard_socket_acks",
    "Socket.IO acks sent, by namespace, event and code (ok, or the error code)",
    ["namespace", "event", "code"],
)
EMIT_DELIVERIES = Counter(
    "switchboard_emit_deliveries",
    "Emitted packets handed to one socket, by path: direct (its websocket frame written at once) or queued",
    ["path"],
)
SOCKET_WRITERS = Gauge(
    "switchboard_socket_writers",
    "Websockets with packets queued that a writer greenlet is writing now (a slow reader or a burst); idle ones have none",
    multiprocess_mode="livesum",
)
ACK_SECONDS = Histogram(
    "switchboard_socket_ack_seconds",
    "Time from an event reaching its handler to its ack, by namespace and event",
    ["namespace", "event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "switchboard_rate_limited",
    "Events refused with rate_limited, by namespace and event",
    ["namespace", "event"],
)
COMMIT_BATCH_SIZE = Histogram(
    "switchboard_commit_batch_size",
    "Messages stored by one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "switchboard_commit_seconds",
    "Duration of one group commit, from taking the write lock to the commit returning",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
HOT_CACHE_LOOKUPS = Counter(
    "switchboard_hot_cache_lookups",
    "Reads of the per-worker cache of users, rooms and memberships (app/services/hot_cache.py), by result",
    ["result"],
)
HOT_CACHE_INVALIDATIONS = Counter(
    "switchboard_hot_cache_invalidations",
    "Invalidations applied to this worker's cache, by source: local (an action here) or queue (another worker)",
    ["source"],
)
READ_MARKER_BATCH_SIZE = Histogram(
    "switchboard_read_marker_batch_size",
    "`read` markers written by one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DATABASE_ERRORS = Counter(
    "switchboard_database_errors",
    "Errors raised by the database driver, by kind (disconnect, or the driver's exception class)",
    ["kind"],
)
REDIS_ERRORS = Counter(
    "switchboard_redis_errors",
    "Redis failures, by source (message_queue, or the logger that reported it)",
    ["source"],
)

bp = Blueprint("metrics", __name__)


def record_commit(batch_size: int, seconds: float) -> None:
    """One group commit of ``batch_size`` messages that took ``seconds``."""
    COMMIT_BATCH_SIZE.observe(batch_size)
    COMMIT_SECONDS.observe(seconds)


# metric.labels() checks and locks on every call; a socket event counts in three series, always
# among a few (namespaces x handled events x error codes), so each is looked up once.
_series: dict[tuple, Any] = {}


def series(metric, *labels: str):
    """``metric.labels(*labels)``, remembered."""
    key = (metric, labels)
    found = _series.get(key)
    if found is None:
        found = _series[key] = metric.labels(*labels)
    return found


def record_ack(namespace: str, event: str, answer: dict, seconds: float) -> None:
    code = "ok" if answer.get("ok") else str(answer.get("error", {}).get("code", "unknown"))
    series(SOCKET_ACKS, namespace, event, code).inc()
    series(ACK_SECONDS, namespace, event).observe(seconds)
    if code == "rate_limited":
        series(RATE_LIMITED, namespace, event).inc()


# -- connected sockets: read from the Socket.IO server, not counted on the side ------------

_socket_labels: set[tuple[str, str]] = set()
_socket_labels_lock = threading.Lock()
_refresher_started = False


def refresh_sockets_connected(server) -> None:
    """Set the gauge from the sockets this worker's Socket.IO server holds now."""
    counts: dict[tuple[str, str], int] = {}
    manager = server.manager
    for namespace in list(manager.get_namespaces()):
        for sid, _eio_sid in manager.get_participants(namespace, None):
            if not manager.is_connected(sid, namespace):
                continue
            try:
                transport = server.transport(sid, namespace)
            except (KeyError, ValueError):
                continue  # gone while we looked
            counts[(namespace, transport)] = counts.get((namespace, transport), 0) + 1
    with _socket_labels_lock:
        _socket_labels.update(counts)
        for labels in _socket_labels:
            SOCKETS_CONNECTED.labels(*labels).set(counts.get(labels, 0))


def start_socket_refresher(socketio) -> None:
    """With several workers a scrape reads the others' files: each worker keeps its own count fresh."""
    global _refresher_started
    if MULTIPROCESS_DIR is None or _refresher_started:
        return
    _refresher_started = True

    def refresh_forever():
        while True:
            socketio.sleep(SOCKET_REFRESH_SECONDS)
            try:
                refresh_sockets_connected(socketio.server)
            except Exception:
                logging.getLogger("switchboard.metrics").exception("could not count connected sockets")

    socketio.start_background_task(refresh_forever)


# -- errors: database errors from the engine, Redis errors from the logs that report them --


def count_database_errors(engine) -> None:
    from sqlalchemy import event

    def handle_error(context) -> None:
        original = context.original_exception
        DATABASE_ERRORS.labels("disconnect" if context.is_disconnect else type(original).__name__).inc()

    event.listen(engine, "handle_error", handle_error)


def is_redis_error(error: BaseException | None) -> bool:
    import redis

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, redis.RedisError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class RedisErrorCounter(logging.Handler):
    """Counts the Redis failures the app and the Socket.IO message queue log.

    python-socketio's Redis manager marks its records with ``redis_exception``; the app's own
    failures carry the exception, whose chain is searched for a RedisError.
    """

    def __init__(self):
        super().__init__(level=logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "redis_exception"):
            REDIS_ERRORS.labels("message_queue").inc()
        elif record.exc_info and is_redis_error(record.exc_info[1]):
            REDIS_ERRORS.labels(record.name).inc()


_redis_error_counter = RedisErrorCounter()


def count_redis_errors(logger_names: Iterable[str] = ("switchboard", "socketio", "app")) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if _redis_error_counter not in logger.handlers:
            logger.addHandler(_redis_error_counter)


# -- the endpoint ---------------------------------------------------------------------------


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``METRICS_ALLOWED_IPS``: addresses or networks, comma-separated."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise RuntimeError(f"METRICS_ALLOWED_IPS: {item.strip()!r} is not an address or network") from None
    return networks


def peer_address() -> str:
    """The address of the TCP peer itself, even behind ProxyFix: a forwarded header is not trusted here."""
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR") or ""


def address_allowed(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def token_allowed(expected: str | None) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@bp.get("/metrics")
def metrics():
    config = current_app.config
    if not (
        address_allowed(peer_address(), current_app.extensions["switchboard.metrics_networks"])
        or token_allowed(config["METRICS_TOKEN"])
    ):
        return jsonify(
            error_body("forbidden", "metrics are served to allowed addresses or with the metrics token")
        ), 403
    refresh_sockets_connected(current_app.extensions["socketio"].server)
    if MULTIPROCESS_DIR is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return Response(prometheus_client.generate_latest(registry), content_type=prometheus_client.CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    from app.extensions import csrf, db

    app.extensions["switchboard.metrics_networks"] = parse_networks(app.config["METRICS_ALLOWED_IPS"])
    app.register_blueprint(bp)
    csrf.exempt(bp)
    with app.app_context():
        count_database_errors(db.engine)
    count_redis_errors()
