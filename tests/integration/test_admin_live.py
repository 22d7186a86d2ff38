"""Moderation on a real server: an admin's python-socketio client kicks and bans users whose
sockets are connected over websocket and over long-polling."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests
import socketio

from tests.support import api
from tests.support.live_server import ROOT, VENV_BIN, LiveServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
WAIT_SECONDS = 10.0


class Recorder:
    """A python-socketio client that keeps every event it gets, so a test can wait for one.

    Incoming events are handled on their own threads, so the test waits on the log.
    """

    def __init__(self, url: str, *, transport: str, namespaces: tuple[str, ...] = ("/",)):
        self.url = url
        self.transport = transport
        self.namespaces = namespaces
        self.client = socketio.Client(reconnection=False)
        self.log: list[tuple[str, str, object]] = []  # (namespace, event, data)
        self.changed = threading.Condition()
        for namespace in namespaces:
            self.client.on("*", self._keep(namespace), namespace=namespace)
            for special in ("connect_error", "disconnect"):
                self.client.on(special, self._keep(namespace, special), namespace=namespace)

    def _keep(self, namespace: str, special: str | None = None):
        def keep(*args):
            event, data = (
                (special, args[0] if args else None) if special else (args[0], args[1] if len(args) > 1 else None)
            )
            with self.changed:
                self.log.append((namespace, event, data))
                self.changed.notify_all()

        return keep

    def connect(self, token: str) -> Recorder:
        self.client.connect(
            self.url,
            auth={"token": token},
            transports=[self.transport],
            namespaces=list(self.namespaces),
            wait_timeout=WAIT_SECONDS,
        )
        return self

    def refused(self, token: str | None) -> object:
        """Connect expecting a refusal; returns the connect_error payload."""
        with pytest.raises(socketio.exceptions.ConnectionError):
            self.client.connect(
                self.url,
                auth={"token": token} if token else None,
                transports=[self.transport],
                namespaces=list(self.namespaces),
                wait_timeout=WAIT_SECONDS,
            )
        return self.wait_for("connect_error", namespace=self.namespaces[0])

    def wait_for(self, event: str, namespace: str = "/", where=lambda data: True):
        def first():
            return next((d for n, e, d in self.log if n == namespace and e == event and where(d)), None)

        with self.changed:
            if not self.changed.wait_for(lambda: first() is not None, timeout=WAIT_SECONDS):
                raise AssertionError(f"no {event} on {namespace} within {WAIT_SECONDS}s; got {self.log!r}")
            return first()

    def events(self, event: str, namespace: str = "/") -> list:
        with self.changed:
            return [d for n, e, d in self.log if n == namespace and e == event]

    def call(self, event: str, data=None, namespace: str = "/admin") -> dict:
        return self.client.call(event, data or {}, namespace=namespace, timeout=WAIT_SECONDS)

    @property
    def sid(self) -> str:
        return self.client.get_sid("/")

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()
        self.client.shutdown()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One real server for the module (a start costs seconds); tests keep apart by their own users."""
    directory = tmp_path_factory.mktemp("admin_live")
    server = LiveServer(f"sqlite:///{directory / 'admin.db'}", directory / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def recorders():
    opened: list[Recorder] = []

    def open_recorder(url: str, transport: str, namespaces: tuple[str, ...] = ("/",)) -> Recorder:
        recorder = Recorder(url, transport=transport, namespaces=namespaces)
        opened.append(recorder)
        return recorder

    yield open_recorder
    for recorder in opened:
        recorder.close()


def create_admin(server, username: str) -> dict:
    """The operator's way: the CLI against the server's database, then a token over the API."""
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "users", "create-admin", username, "--password", PASSWORD],
        cwd=ROOT,
        env=server.env(),
        check=True,
        capture_output=True,
    )
    return token_for(server.url, username)


def token_for(url: str, username: str) -> dict:
    response = requests.post(f"{url}/api/token", json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_admin_kicks_sockets_on_both_transports(live, recorders):
    boss = api.new_username("boss")
    admin = recorders(live.url, "websocket", ("/admin",)).connect(create_admin(live, boss)["token"])
    member = api.register_and_token(live.url, api.new_username("alice"), PASSWORD)
    by_websocket = recorders(live.url, "websocket").connect(member["token"])
    by_polling = recorders(live.url, "polling").connect(member["token"])

    # The stats push comes without being asked for, and counts these sockets.
    pushed = admin.wait_for("stats", "/admin", where=lambda stats: stats["sockets"] >= 2)
    assert pushed["users_online"] >= 1
    assert any(room["name"] == "general" for room in pushed["rooms"])

    listed = {s["sid"]: s for s in admin.call("sockets")["sockets"]}
    assert listed[by_websocket.sid]["transport"] == "websocket"
    assert listed[by_polling.sid]["transport"] == "polling"
    assert listed[by_polling.sid]["user"] == member["user"]

    for kicked, survivor in ((by_polling, by_websocket), (by_websocket, None)):
        answer = admin.call("kick", {"sid": kicked.sid})
        assert answer["ok"] is True, answer
        assert kicked.wait_for("kicked") == {"reason": "kicked by an admin"}
        kicked.wait_for("disconnect")
        if survivor is not None:
            assert survivor.client.connected
            assert survivor.events("kicked") == []

    assert admin.call("kick", {"sid": "gone"})["error"]["code"] == "not_found"
    mine = [e for e in admin.call("audit")["entries"] if e["admin"]["username"] == boss]
    assert [e["action"] for e in mine] == ["kick", "kick"]


def test_sockets_reports_the_transport_after_an_upgrade(live, recorders):
    admin = recorders(live.url, "polling", ("/admin",)).connect(create_admin(live, api.new_username("boss"))["token"])
    member = api.register_and_token(live.url, api.new_username("alice"), PASSWORD)
    upgrading = Recorder(live.url, transport="polling")
    upgrading.client.connect(live.url, auth={"token": member["token"]}, wait_timeout=WAIT_SECONDS)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        transport = None
        while time.monotonic() < deadline and transport != "websocket":
            listed = {s["sid"]: s for s in admin.call("sockets")["sockets"]}
            transport = listed[upgrading.sid]["transport"]
            time.sleep(0.1)
        assert transport == "websocket"
    finally:
        upgrading.close()


def test_admin_bans_a_user_on_both_transports_and_every_door_closes(live, recorders):
    admin = recorders(live.url, "polling", ("/admin",)).connect(create_admin(live, api.new_username("boss"))["token"])
    name = api.new_username("alice")
    member_token = api.register_and_token(live.url, name, PASSWORD)["token"]
    sockets = [recorders(live.url, transport).connect(member_token) for transport in ("websocket", "polling")]

    answer = admin.call("ban", {"user": name, "reason": "spam"})

    assert answer["ok"] is True and answer["user"]["banned"] is True
    for recorder in sockets:
        assert recorder.wait_for("kicked") == {"reason": "banned"}
        recorder.wait_for("disconnect")

    for transport in ("websocket", "polling"):
        assert recorders(live.url, transport).refused(member_token) == {"message": "banned"}
    token = requests.post(f"{live.url}/api/token", json={"username": name, "password": PASSWORD}, timeout=10)
    assert token.status_code == 403 and token.json()["error"]["code"] == "banned"

    assert admin.call("unban", {"user": name})["ok"] is True
    back = recorders(live.url, "websocket").connect(member_token)
    assert back.wait_for("session")["user"]["username"] == name
    about_them = [e["action"] for e in admin.call("audit")["entries"] if e["target"] == name]
    assert about_them == ["unban", "ban"]


def test_admin_namespace_refusals_name_their_reason(live, recorders):
    member_token = api.register_and_token(live.url, api.new_username("alice"), PASSWORD)["token"]

    assert recorders(live.url, "polling", ("/admin",)).refused(None) == {"message": "unauthorized"}
    assert recorders(live.url, "websocket", ("/admin",)).refused(member_token) == {"message": "forbidden"}
