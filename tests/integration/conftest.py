"""Fixtures for tests against a real server: one server per module, accounts, recording clients, Node."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.integration.recording_client import RecordingClient
from tests.support import api, components
from tests.support.live_server import ROOT, VENV_BIN, LiveServer, stop_all

NODE_SCRIPTS = Path(__file__).resolve().parent / "node"
PASSWORD = "correct horse battery"
TRANSPORTS = ["websocket", "polling"]


@dataclass(frozen=True)
class Account:
    """A user registered on a live server, with a bearer token for sockets."""

    token: str
    user: dict
    password: str

    @property
    def username(self) -> str:
        return self.user["username"]


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One real gunicorn + gevent-websocket server shared by a module's tests.

    Starting a server costs seconds, so tests share one and keep apart by using
    their own fresh users and rooms.
    """
    directory = tmp_path_factory.mktemp("chat_server")
    server = LiveServer(f"sqlite:///{directory / 'chat.db'}", directory / "server.log").start()
    yield server
    server.stop()


def create_account(server: LiveServer, *, admin: bool = False, prefix: str = "user") -> Account:
    username = api.new_username(prefix)
    if admin:
        subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "users", "create-admin", username, "--password", PASSWORD],
            cwd=ROOT,
            env=server.env(),
            check=True,
            capture_output=True,
        )
    answer = api.register_and_token(server.url, username, PASSWORD)
    assert answer["user"]["is_admin"] is admin
    return Account(token=answer["token"], user=answer["user"], password=PASSWORD)


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    database_url: str
    env: dict
    directory: Path


# Short, so the dead-worker test waits seconds rather than the production default of 30.
PRESENCE_TTL_SECONDS = 5


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """Workers A and B, shared by every module that tests two workers: starting them costs seconds."""
    with two_workers(tmp_path_factory.mktemp("cluster")) as both:
        yield both


@contextmanager
def two_workers(directory: Path) -> Iterator[Cluster]:
    """Workers A and B: one gunicorn + gevent worker each, one PostgreSQL database, one Redis prefix."""
    import redis

    redis_url = components.redis_url()
    database_url = components.create_postgres_database()
    prefix = components.unique_name("sbscale")
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PRESENCE_TTL_SECONDS": str(PRESENCE_TTL_SECONDS)}
    servers: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            server = LiveServer(database_url, directory / f"{name}.log", env=env)
            servers.append(server)
            server.start(migrate=name == "a")  # one schema, migrated once
        yield Cluster(servers[0], servers[1], database_url, env, directory)
    finally:
        stop_all(servers)
        components.drop_postgres_database(database_url)
        client = redis.Redis.from_url(redis_url)
        leftover = list(client.scan_iter(f"{prefix}:*"))
        if leftover:
            client.delete(*leftover)
        client.close()


@pytest.fixture
def account(chat_server):
    """Register a fresh user on the module's server: ``account()``, ``account(admin=True)``."""

    def make(*, admin: bool = False, prefix: str = "user") -> Account:
        return create_account(chat_server, admin=admin, prefix=prefix)

    return make


@pytest.fixture
def open_client():
    """Recording Socket.IO clients, all closed at teardown: ``open_client(server_url, transport)``."""
    clients: list[RecordingClient] = []

    def make(url: str, transport: str, namespaces: tuple[str, ...] = ("/",)) -> RecordingClient:
        client = RecordingClient(url, transport=transport, namespaces=namespaces)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def connect(chat_server, open_client):
    """A client of the module's server signed in with ``account``'s token."""

    def make(account: Account, transport: str, namespaces: tuple[str, ...] = ("/",)) -> RecordingClient:
        client = open_client(chat_server.url, transport, namespaces)
        client.connect(token=account.token)
        return client

    return make


def login_cookie(server_url: str, account: Account) -> str:
    """Sign in through the HTML form, CSRF token included, and return the Cookie header it earns."""
    browser = requests.Session()
    page = browser.get(f"{server_url}/login", timeout=10)
    assert page.status_code == 200
    csrf_token = hidden_input(page.text, "csrf_token")
    response = browser.post(
        f"{server_url}/login",
        data={"username": account.username, "password": account.password, "csrf_token": csrf_token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in browser.cookies)


def hidden_input(html: str, name: str) -> str:
    values: list[str] = []

    class HiddenInputFinder(HTMLParser):
        def handle_starttag(self, tag, attrs):
            fields = dict(attrs)
            if tag == "input" and fields.get("name") == name:
                values.append(fields.get("value") or "")

    HiddenInputFinder().feed(html)
    assert values, f"no <input name={name!r}> on the page"
    return values[0]


@pytest.fixture
def run_node():
    """Run ``node tests/integration/node/<script>`` with a JSON scenario; returns the JSON it prints."""
    node = components.node_path()
    if not (ROOT / "node_modules" / "socket.io-client").is_dir():
        components.missing("socket.io-client is not installed in node_modules (run `npm ci`)")

    def run(script: str, scenario: dict, timeout: float = 60) -> dict:
        completed = subprocess.run(
            [node, str(NODE_SCRIPTS / script), json.dumps(scenario)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert completed.returncode == 0, f"{script} failed:\n{completed.stdout}\n{completed.stderr}"
        lines = completed.stdout.strip().splitlines()
        assert lines, f"{script} printed nothing:\n{completed.stderr}"
        return json.loads(lines[-1])

    return run
