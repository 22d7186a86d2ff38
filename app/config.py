"""Configuration read from the environment, with one variant per deployment kind."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def _env_list(name: str) -> list[str]:
    return [item.strip().rstrip("/") for item in os.environ.get(name, "").split(",") if item.strip()]


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE / 'switchboard.db'}"
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
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
    TOKEN_TTL_SECONDS = int(os.environ.get("TOKEN_TTL_SECONDS", 7 * 24 * 3600))
    # The contract's limit; only the benchmark raises it, to drive 200 msg/s from a 100-member room.
    RATE_LIMIT_COUNT = int(os.environ.get("RATE_LIMIT_COUNT", 20))
    RATE_LIMIT_WINDOW_SECONDS = 10.0
    # New rooms one user may create per window (joining existing rooms is not limited by this).
    ROOM_CREATE_LIMIT = int(os.environ.get("ROOM_CREATE_LIMIT", 30))
    ROOM_CREATE_WINDOW_SECONDS = float(os.environ.get("ROOM_CREATE_WINDOW_SECONDS", 3600))
    STATS_INTERVAL_SECONDS = float(os.environ.get("STATS_INTERVAL_SECONDS", 5))
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
