"""A SQLite server whose disk fills up or whose database turns read-only: clear errors, nothing lost, no damage.

The database lives on a small tmpfs the test mounts (it runs as root, as CI does). While writes
fail, `message` acks answer `internal` with a message that names the cause, /healthz answers 503,
reads still work and the server keeps running; once space is freed or write access is back,
the same sends succeed, every acknowledged message is stored once and PRAGMA integrity_check is ok.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.integration.recording_client import RecordingClient
from tests.support import api
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
# Room for the schema, the WAL and the shared-memory file; the test fills the rest.
DISK_SIZE = "16m"
WAIT_SECONDS = 20


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A size-limited tmpfs under the test's directory, unmounted afterwards."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield mountpoint
    subprocess.run(["chattr", "-R", "-i", str(mountpoint)], capture_output=True)
    if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system has no space left; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError:
                break
    # A page-sized write may still fit where a 64 KiB one did not.
    with open(filler, "ab", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 4096)
    return filler


def health(server: LiveServer) -> int:
    return requests.get(f"{server.url}/healthz", timeout=10).status_code


def wait_for_health(server: LiveServer, status: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while health(server) != status:
        assert time.monotonic() < deadline, f"/healthz never answered {status}"
        time.sleep(0.2)


def send(client: RecordingClient, client_id: str, body: str | None = None) -> dict:
    return client.call("message", {"room": "general", "body": body or f"body of {client_id}", "client_id": client_id})


def history(server: LiveServer, token: str) -> requests.Response:
    return requests.get(
        f"{server.url}/api/rooms/general/messages",
        headers={"Authorization": f"Bearer {token}"},
        params={"limit": 100},
        timeout=10,
    )


def stored(database: Path) -> dict[str, int]:
    """client_id -> id of every stored message, and the database checked for damage."""
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = connection.execute("SELECT client_id, id FROM messages WHERE client_id IS NOT NULL").fetchall()
    finally:
        connection.close()
    client_ids = [client_id for client_id, _ in rows]
    assert len(client_ids) == len(set(client_ids)), "a message was stored twice"
    return dict(rows)


def connected_client(server: LiveServer, token: str) -> RecordingClient:
    client = RecordingClient(server.url, transport="websocket")
    client.connect(token=token)
    return client


def test_a_full_disk_refuses_writes_clearly_and_loses_nothing(small_disk, live_server_factory):
    database = small_disk / "chat.db"
    server = live_server_factory(f"sqlite:///{database}", env={"RATE_LIMIT_COUNT": "100000"})
    token = api.register_and_token(server.url, api.new_username("full"), PASSWORD)["token"]
    client = connected_client(server, token)
    acked: dict[str, int] = {}
    try:
        for n in range(5):
            answer = send(client, f"before-{n}")
            assert answer["ok"] is True, answer
            acked[f"before-{n}"] = answer["message"]["id"]
        assert health(server) == 200

        filler = fill(small_disk)
        refused = []
        for n in range(200):
            client_id = f"full-{n}"
            answer = send(client, client_id, "x" * 2000)
            if answer["ok"]:
                acked[client_id] = answer["message"]["id"]  # the WAL still had room for it
                continue
            refused.append(client_id)
            assert answer["error"]["code"] == "internal"
            assert "disk is full" in answer["error"]["message"]
            if len(refused) == 3:
                break
        assert len(refused) == 3, "the full disk never refused a message"
        assert health(server) == 503
        assert history(server, token).status_code == 200  # reads still work
        assert server.process.poll() is None

        filler.unlink()
        wait_for_health(server, 200)
        for client_id in refused:  # the client sends again what was not acknowledged
            answer = send(client, client_id, "x" * 2000)
            assert answer["ok"] is True, answer
            acked[client_id] = answer["message"]["id"]
        answer = send(client, "after")
        assert answer["ok"] is True, answer
        acked["after"] = answer["message"]["id"]
    finally:
        client.close()
    server.stop()

    assert stored(database) == acked
    assert "Traceback" not in server.log_text()


def test_a_read_only_database_refuses_writes_clearly_until_it_is_writable_again(small_disk, live_server_factory):
    database = small_disk / "chat.db"
    server = live_server_factory(f"sqlite:///{database}", env={"RATE_LIMIT_COUNT": "100000"})
    token = api.register_and_token(server.url, api.new_username("readonly"), PASSWORD)["token"]
    client = connected_client(server, token)
    try:
        first = send(client, "before")
        assert first["ok"] is True, first
    finally:
        client.close()
    server.stop()

    # As a restore can leave it: a database file the server may read but not write.
    subprocess.run(["chattr", "+i", str(database)], check=True)
    server.start(migrate=False, healthy=False)
    assert health(server) == 503
    client = connected_client(server, token)
    try:
        refused = send(client, "while-read-only")
        assert refused["ok"] is False and refused["error"]["code"] == "internal"
        assert "read-only" in refused["error"]["message"]
        page = history(server, token)
        assert page.status_code == 200 and [m["client_id"] for m in page.json()["messages"]] == ["before"]
        assert health(server) == 503
        assert server.process.poll() is None

        subprocess.run(["chattr", "-i", str(database)], check=True)
        wait_for_health(server, 200)
        again = send(client, "while-read-only")
        assert again["ok"] is True, again
    finally:
        client.close()
    server.stop()

    assert stored(database) == {"before": first["message"]["id"], "while-read-only": again["message"]["id"]}
    assert "Traceback" not in server.log_text()
