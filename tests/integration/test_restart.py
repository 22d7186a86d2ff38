"""A server killed with SIGKILL in the middle of a burst loses nothing it acknowledged."""

from __future__ import annotations

import threading
import time

import pytest

from app.client import SwitchboardClient
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    assert_all_converge,
    close_and_collect,
    essentials,
    seed_accounts,
    stored_messages,
)

ROOM = "restart"
MESSAGES_EACH = 80
SERVER_ENV = {"RATE_LIMIT_COUNT": "100000"}
TRANSPORTS = [["websocket"], None, ["polling"]]
WAIT_SECONDS = 60


@pytest.mark.integration
@pytest.mark.timeout(200)
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_acked_messages_survive_sigkill_and_every_client_converges_after_restart(live_server_factory):
    threads_before = set(threading.enumerate())
    server = live_server_factory(env=SERVER_ENV)
    accounts = seed_accounts(server, len(TRANSPORTS), prefix="restart", rooms=(ROOM,))
    clients = [
        SwitchboardClient(
            server.url, account.token, transports=transports, reconnection_delay=0.1, reconnection_delay_max=0.5
        )
        for account, transports in zip(accounts, TRANSPORTS, strict=True)
    ]
    try:
        for client in clients:
            client.connect()
        sent = {
            account.username: [client.send(ROOM, f"{account.username} #{n:03d}") for n in range(MESSAGES_EACH)]
            for account, client in zip(accounts, clients, strict=True)
        }
        total = len(accounts) * MESSAGES_EACH
        deadline = time.monotonic() + WAIT_SECONDS
        while sum(len(client.acked) for client in clients) < total // 4:
            assert time.monotonic() < deadline, "the burst never got going"
            time.sleep(0.005)
        server.kill()
        acked_before_kill = {cid: m for client in clients for cid, m in client.acked.items()}
        assert len(acked_before_kill) < total, "the burst was over before the kill"

        # Read the file the dead server left behind: every acknowledged message is in it, as acked.
        stored_at_kill = {row["client_id"]: row for row in stored_messages(server.database_url)}
        for client_id, message in acked_before_kill.items():
            assert client_id in stored_at_kill, f"acked message {message['id']} lost by the kill"
            assert stored_at_kill[client_id]["id"] == message["id"]
            assert stored_at_kill[client_id]["body"] == message["body"]

        server.start(migrate=False)
        for client in clients:
            client.flush(WAIT_SECONDS)

        expected = assert_all_converge(clients, server.database_url, ROOM, WAIT_SECONDS)

        rows = stored_messages(server.database_url)
    finally:
        close_and_collect(clients, threads_before=threads_before)

    assert len(expected) == total
    for account, client in zip(accounts, clients, strict=True):
        mine = [row for row in rows if row["sender"] == account.username]
        assert [(r["client_id"], r["body"]) for r in mine] == [
            (item.client_id, item.payload["body"]) for item in sent[account.username]
        ]
        assert client.rejected == []
        assert {cid: m["id"] for cid, m in client.acked.items()} == {r["client_id"]: r["id"] for r in mine}
        assert client.connections >= 2  # it really lost the server and came back
    for client in clients:
        assert essentials(client.room_messages(ROOM)) == expected
    assert "database is locked" not in server.log_text()
