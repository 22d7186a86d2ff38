"""Configuration read from the environment, with one variant per deployment kind."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_list(name: str) -> list[str]:
    return [item.strip().rstrip("/") for item in os.environ.get(name, "").split(",") if item.strip()]


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE / 'switchboard.db'}"
    # hide_parameters: a database error logs its SQL without the values (message bodies, password hashes).
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True, "hide_parameters": True}
    REDIS_URL = os.environ.get("REDIS_URL") or None
    # Prefix for every Redis key and the Socket.IO channel, so several deployments
    # (or test runs) can share one Redis server.
    REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "switchboard")
    # With REDIS_URL: a worker that stops heartbeating for this long is presumed dead and its sockets offline.
    PRESENCE_TTL_SECONDS = float(os.environ.get("PRESENCE_TTL_SECONDS", 30))
    CHAT_ALLOWED_ORIGINS = _env_list("CHAT_ALLOWED_ORIGINS")
    SOCKETIO_ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE") or None
    SOCKETIO_LOGGER = False
    MAX_PACKET_BYTES = 1_000_000
    # Under gevent-websocket, an emit's websocket frame is built once and written straight to every
    # websocket whose Engine.IO queue is idle (app/sockets/fanout.py); "0" sends every packet through the queue.
    FANOUT_DIRECT_WRITES = os.environ.get("FANOUT_DIRECT_WRITES", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )
    # Engine.IO heartbeats: the server pings every socket this often and closes one whose answer
    # takes longer than the timeout (the defaults are Engine.IO's own).
    SOCKET_PING_INTERVAL_SECONDS = _env_float("SOCKET_PING_INTERVAL_SECONDS", 25)
    SOCKET_PING_TIMEOUT_SECONDS = _env_float("SOCKET_PING_TIMEOUT_SECONDS", 20)
    # How long a worker keeps a user's ban and mute state, a room and a membership it read for the
    # message path (app/services/hot_cache.py); changes reach every worker's copy at once anyway.
    HOT_CACHE_TTL_SECONDS = _env_float("HOT_CACHE_TTL_SECONDS", 30)
    # `read` markers wait this long to be written together in one transaction (app/services/read_markers.py),
    # or until READ_MARKER_BATCH of them are waiting.
    READ_MARKER_FLUSH_SECONDS = _env_float("READ_MARKER_FLUSH_SECONDS", 0.025)
    READ_MARKER_BATCH = _env_int("READ_MARKER_BATCH", 500)
    # Malformed Socket.IO packets answered `invalid` before the connection is closed; a packet
    # that cannot be answered at all closes it at once.
    SOCKET_MAX_BAD_PACKETS = _env_int("SOCKET_MAX_BAD_PACKETS", 20)
    # Flood budgets for every socket event (token buckets; typing/read/who cost 1, join, leave,
    # history, sync and the like 5, anything else 2): per socket and per user, per worker.
    # Over budget an event is answered `rate_limited`; SOCKET_FLOOD_REFUSALS refusals in a row
    # (one is forgiven per second) close the connection.
    SOCKET_EVENT_BURST = _env_float("SOCKET_EVENT_BURST", 300)
    SOCKET_EVENT_REFILL_PER_SECOND = _env_float("SOCKET_EVENT_REFILL_PER_SECOND", 30)
    USER_EVENT_BURST = _env_float("USER_EVENT_BURST", 600)
    USER_EVENT_REFILL_PER_SECOND = _env_float("USER_EVENT_REFILL_PER_SECOND", 60)
    SOCKET_FLOOD_REFUSALS = _env_float("SOCKET_FLOOD_REFUSALS", 50)
    # Events of one socket being handled at once; more wait for none and are refused.
    SOCKET_MAX_EVENTS_IN_PROGRESS = _env_int("SOCKET_MAX_EVENTS_IN_PROGRESS", 256)
    # Engine.IO sessions one address may hold open without signing in on any namespace; the
    # next handshake answers 429. 0 turns the cap off. Such a session is closed after
    # SOCKET_CONNECT_TIMEOUT_SECONDS (Socket.IO's own connect timeout).
    ANONYMOUS_HANDSHAKES_PER_ADDRESS = _env_int("ANONYMOUS_HANDSHAKES_PER_ADDRESS", 200)
    SOCKET_CONNECT_TIMEOUT_SECONDS = _env_float("SOCKET_CONNECT_TIMEOUT_SECONDS", 30)
    TOKEN_TTL_SECONDS = int(os.environ.get("TOKEN_TTL_SECONDS", 7 * 24 * 3600))
    # The contract's limit; only the benchmark raises it, to drive 200 msg/s from a 100-member room.
    RATE_LIMIT_COUNT = int(os.environ.get("RATE_LIMIT_COUNT", 20))
    RATE_LIMIT_WINDOW_SECONDS = float(os.environ.get("RATE_LIMIT_WINDOW_SECONDS", 10))
    # New rooms one user may create per window (joining existing rooms is not limited by this).
    ROOM_CREATE_LIMIT = int(os.environ.get("ROOM_CREATE_LIMIT", 30))
    ROOM_CREATE_WINDOW_SECONDS = float(os.environ.get("ROOM_CREATE_WINDOW_SECONDS", 3600))
    STATS_INTERVAL_SECONDS = float(os.environ.get("STATS_INTERVAL_SECONDS", 5))
    # Uploaded files: one directory every instance shares (content-addressed blobs).
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR") or str(INSTANCE / "uploads")
    UPLOAD_MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", 10 * 1024 * 1024))
    SOCKET_UPLOAD_MAX_BYTES = int(os.environ.get("SOCKET_UPLOAD_MAX_BYTES", 512 * 1024))
    # Images with more pixels than this are refused before they are decoded (decompression bombs).
    IMAGE_MAX_PIXELS = int(os.environ.get("IMAGE_MAX_PIXELS", 40_000_000))
    THUMBNAIL_MAX_SIDE = 400
    FILE_CACHE_MAX_AGE = int(os.environ.get("FILE_CACHE_MAX_AGE", 86400))
    # `flask files prune` removes uploads no message uses once they are this old.
    UPLOAD_PRUNE_AGE_SECONDS = int(os.environ.get("UPLOAD_PRUNE_AGE_SECONDS", 86400))
    # "text" or "json" (one JSON object per line: requests, socket connections, refused events, errors).
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
    # /metrics answers these addresses or networks (comma-separated), or a request with the bearer METRICS_TOKEN.
    METRICS_ALLOWED_IPS = os.environ.get("METRICS_ALLOWED_IPS", "127.0.0.1,::1")
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    # Failed sign-ins (POST /api/token, POST /login) allowed per account and per client address
    # in any window; more answer 429 with Retry-After. Successes never count. Generous per
    # address, so a classroom behind one NAT can still sign in.
    SIGNIN_FAILURES_PER_ACCOUNT = _env_int("SIGNIN_FAILURES_PER_ACCOUNT", 10)
    SIGNIN_FAILURES_PER_ADDRESS = _env_int("SIGNIN_FAILURES_PER_ADDRESS", 100)
    SIGNIN_FAILURE_WINDOW_SECONDS = _env_float("SIGNIN_FAILURE_WINDOW_SECONDS", 900)
    # Password hashes computed at once off the gevent hub (scrypt takes ~0.1 s of CPU each).
    PASSWORD_HASH_THREADS = _env_int("PASSWORD_HASH_THREADS", 4)
    # How many reverse proxies in front of the server may set X-Forwarded-For/-Proto/-Host.
    # 0 trusts none of them: a client cannot pretend to be another host or address.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)
    # Host names this server answers to (comma-separated; ".example.com" takes every subdomain,
    # the port is not compared); any other Host header gets 400, sockets included. Unset: any host.
    TRUSTED_HOSTS = _env_list("TRUSTED_HOSTS") or None
    # Sent with every response: no inline script or style, no framing, no MIME sniffing.
    SECURITY_HEADERS = {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self' ws: wss:; font-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
            "form-action 'self'; object-src 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    TESTING = False
    DEBUG = False


class DevelopmentConfig(Config):
    pass


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "testing-secret-key"
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL") or "sqlite://"
    WTF_CSRF_ENABLED = False
    SOCKETIO_ASYNC_MODE = "threading"
    # scrypt costs ~0.1 s per hash; hundreds of test users and logins would spend most of the suite there.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    STATS_INTERVAL_SECONDS = 0  # no background push in unit tests


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "true").lower() != "false"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE

    @classmethod
    def check(cls) -> None:
        if not os.environ.get("SECRET_KEY"):
            raise RuntimeError("SECRET_KEY must be set in production")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    name = os.environ.get("SWITCHBOARD_ENV", "development").lower()
    if name not in CONFIGS:
        raise RuntimeError(f"SWITCHBOARD_ENV must be one of {', '.join(CONFIGS)}, not {name!r}")
    config = CONFIGS[name]
    if config is ProductionConfig:
        ProductionConfig.check()
    return config
