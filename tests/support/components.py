"""Finding the real components the tests need: PostgreSQL, Redis, Chromium, Node.

On a laptop a missing component skips the test with a one-line reason; under
CI=true a missing component fails it.
"""

import os
import shutil
import uuid

import pytest

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required component missing under CI: {reason}")
    pytest.skip(reason)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_postgres_database() -> str:
    """A throwaway database; returns its SQLAlchemy URL."""
    import psycopg

    if not postgres_available():
        missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = unique_name("sb_test")
    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        missing(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL


def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


def node_path() -> str:
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed")
    return node
