"""Non-browser participants for the browser tests: python-socketio clients with API tokens."""

from __future__ import annotations

import subprocess

import socketio

from tests.support import api
from tests.support.live_server import ROOT, VENV_BIN

BOT_PASSWORD = "correct horse battery"


class Bot:
    """One signed-in socket on ``namespace``; ``call`` sends an event and returns its ack."""

    def __init__(self, base_url: str, username: str | None = None, *, namespace: str = "/"):
        grant = api.register_and_token(base_url, username or api.new_username("bot"), BOT_PASSWORD)
        self.token = grant["token"]
        self.user = grant["user"]
        self.username = self.user["username"]
        self.client = socketio.SimpleClient()
        self.client.connect(
            base_url, auth={"token": grant["token"]}, namespace=namespace, transports=["websocket"], wait_timeout=10
        )

    def call(self, event: str, data: dict) -> dict:
        ack = self.client.call(event, data, timeout=15)
        assert ack["ok"], (event, data, ack)
        return ack

    def say(self, room: str, body: str, client_id: str | None = None) -> dict:
        return self.call("message", {"room": room, "body": body, "client_id": client_id or body})["message"]

    def dm(self, to: str, body: str, client_id: str | None = None) -> dict:
        return self.call("dm", {"to_user": to, "body": body, "client_id": client_id or body})["message"]

    def close(self) -> None:
        self.client.disconnect()


def make_admin(server, username: str) -> None:
    """Create an admin the way an operator does, with the CLI."""
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "users", "create-admin", username, "--password", BOT_PASSWORD],
        cwd=ROOT,
        env=server.env(),
        check=True,
        capture_output=True,
    )
