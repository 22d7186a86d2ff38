"""Shared fixtures: the app on a fresh database, HTTP and CLI clients, users, socket clients."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("SWITCHBOARD_ENV", "testing")

from app.extensions import db, socketio  # noqa: E402
from app.services import users  # noqa: E402
from tests.support import components
from tests.support.apps import app_on_fresh_database  # noqa: E402

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class TestUser:
    """What a test needs of a user it created, usable outside any app context."""

    __test__ = False  # not a test class, despite the name

    id: int
    username: str
    is_admin: bool
    password: str

    def to_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


_names = itertools.count(1)


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    """A fresh, empty database. Tests that must also hold on PostgreSQL parametrize this
    with ``@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = components.create_postgres_database()
        yield url
        components.drop_postgres_database(url)


@pytest.fixture
def app_settings() -> dict:
    """Config values a test module overrides (its limits, say) by defining a fixture of this name."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, app_settings):
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "UPLOAD_DIR": str(tmp_path / "uploads"), **app_settings}
    with app_on_fresh_database(settings) as app:
        yield app


@pytest.fixture
def ctx(app):
    """An application context, for tests that call services directly."""
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user: ``make_user()``, ``make_user("ann")``, ``make_user(admin=True)``."""

    def factory(username: str | None = None, *, password: str = PASSWORD, admin: bool = False) -> TestUser:
        name = username or f"user{next(_names)}"
        with app.app_context():
            user = users.register_user(name, password)
            if admin:
                user = users.set_admin(name, True)
            return TestUser(id=user.id, username=user.username, is_admin=user.is_admin, password=password)

    return factory


@pytest.fixture
def login(app):
    """Log a test client in through the real login form; returns the client."""

    def do_login(user, password: str | None = None, client=None):
        client = client or app.test_client()
        password = password or getattr(user, "password", PASSWORD)
        response = client.post("/login", data={"username": user.username, "password": password})
        assert response.status_code == 302, response.data
        return client

    return do_login


@pytest.fixture
def socket_client(app, login):
    """A Socket.IO test client signed in as ``user`` through the login cookie."""
    created = []

    def connect(user, namespace: str = "/", *, password: str | None = None, flask_client=None):
        flask_client = flask_client or login(user, password)
        sio = socketio.test_client(app, namespace=namespace, flask_test_client=flask_client)
        created.append(sio)
        return sio

    yield connect
    for sio in created:
        for namespace in ("/", "/admin"):
            if sio.is_connected(namespace):
                sio.disconnect(namespace=namespace)


@pytest.fixture
def live_server_factory(tmp_path):
    """Start real servers: ``live_server_factory(database_url=None, **LiveServer kwargs)``.

    Each gets a fresh SQLite file unless a database URL is given; all are stopped at teardown.
    """
    from tests.support.live_server import LiveServer

    servers = []

    def start(database_url: str | None = None, **kwargs):
        index = len(servers)
        url = database_url or f"sqlite:///{tmp_path / f'live{index}.db'}"
        server = LiveServer(url, tmp_path / f"server{index}.log", **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(live_server_factory):
    """One real gunicorn + gevent-websocket server on a free port with a fresh SQLite database."""
    return live_server_factory()
