"""A server killed with SIGKILL in the middle of a burst of messages, edits, deletions and reactions
loses nothing it acknowledged, and every client converges on the stored state after the restart."""

from __future__ import annotations

import threading
import time

import pytest

from app.client import SwitchboardClient
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    ScriptedUser,
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
BATCH = 10
# The kill waits until this many edits, deletions and reactions are acknowledged as well.
CHANGES_BEFORE_KILL = 10


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
        scripts = [
            ScriptedUser(
                client, account.username, ROOM, MESSAGES_EACH, seed=index, wait=WAIT_SECONDS, batch=BATCH
            ).start()
            for index, (account, client) in enumerate(zip(accounts, clients, strict=True))
        ]
        total = len(accounts) * MESSAGES_EACH
        deadline = time.monotonic() + WAIT_SECONDS
        while (
            sum(len(client.acked) for client in clients) < total // 4
            or sum(len(script.changes) for script in scripts) < CHANGES_BEFORE_KILL
        ):
            assert time.monotonic() < deadline, "the burst never got going"
            time.sleep(0.005)
        server.kill()
        acked_before_kill = {cid: m for client in clients for cid, m in client.acked.items()}
        changes_before_kill = [change for script in scripts for change in list(script.changes)]
        assert len(acked_before_kill) < total, "the burst was over before the kill"

        # Read the file the dead server left behind: every acknowledged message is in it, as acked,
        # and every acknowledged change is in it (or a later change of the same message is).
        stored_at_kill = {row["client_id"]: row for row in stored_messages(server.database_url)}
        for client_id, message in acked_before_kill.items():
            assert client_id in stored_at_kill, f"acked message {message['id']} lost by the kill"
            assert stored_at_kill[client_id]["id"] == message["id"]
            assert stored_at_kill[client_id]["created_at"] == message["created_at"]
            if stored_at_kill[client_id]["rev"] == message["rev"]:  # not changed since it was acked
                assert essentials([stored_at_kill[client_id]]) == essentials([message])
        for change in changes_before_kill:
            row = stored_at_kill[change["client_id"]]
            assert row["rev"] >= change["rev"], f"acked change {change['rev']} of {change['id']} lost by the kill"
            if row["rev"] == change["rev"]:
                assert essentials([row]) == essentials([change])

        server.start(migrate=False)
        for script in scripts:
            script.join(WAIT_SECONDS)
        for client in clients:
            client.flush(WAIT_SECONDS)

        expected = assert_all_converge(clients, server.database_url, ROOM, WAIT_SECONDS)

        rows = stored_messages(server.database_url)
    finally:
        close_and_collect(clients, threads_before=threads_before)

    assert len(expected) == total
    for account, client, script in zip(accounts, clients, scripts, strict=True):
        mine = [row for row in rows if row["sender"] == account.username]
        assert [(r["client_id"], r["body"]) for r in mine] == [
            (item.client_id, script.final_body[item.client_id]) for item in script.sent
        ]
        assert client.rejected == []
        assert {cid: m["id"] for cid, m in client.acked.items()} == {r["client_id"]: r["id"] for r in mine}
        assert client.connections >= 2  # it really lost the server and came back
    for client in clients:
        assert essentials(client.room_messages(ROOM)) == expected
    assert any(row["edited_at"] for row in rows) and any(row["deleted"] for row in rows)
    assert any(row["reactions"] for row in rows)
    assert "database is locked" not in server.log_text()
