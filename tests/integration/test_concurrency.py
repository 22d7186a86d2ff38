"""Fifty users sending at once against SQLite, from two server processes: every ack is a stored row."""

from __future__ import annotations

import threading

import pytest

from app.client import SwitchboardClient
from tests.client.harness import seed_accounts, stored_messages

SENDERS = 50
# Ten rooms of five: every sender writes at once, and each message fans out to four other sockets
# rather than forty-nine, which would spend the test's time on broadcasting.
ROOMS = 10
MESSAGES_EACH = 6
# Two workers write the one SQLite file from two processes, where only SQLite's own locking
# (BEGIN IMMEDIATE and the busy timeout) keeps them apart. Websocket only: without sticky
# sessions a polling client could be sent to the other worker.
WORKERS = 2
SERVER_ENV = {"RATE_LIMIT_COUNT": "100000"}
WAIT_SECONDS = 90


def room_of(index: int) -> str:
    return f"burst-{index % ROOMS}"


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_fifty_concurrent_senders_on_sqlite_are_all_stored_once_without_lock_errors(live_server_factory):
    server = live_server_factory(workers=WORKERS, env=SERVER_ENV)
    accounts = seed_accounts(server, SENDERS, prefix="burst", rooms=lambda index: (room_of(index),))
    clients = [SwitchboardClient(server.url, account.token, transports=["websocket"]) for account in accounts]
    try:
        for client in clients:
            client.connect()
        start = threading.Barrier(SENDERS)

        def send_all(client: SwitchboardClient, index: int) -> None:
            start.wait(WAIT_SECONDS)
            for n in range(MESSAGES_EACH):
                client.send(room_of(index), f"{accounts[index].username} #{n}")

        senders = [
            threading.Thread(target=send_all, args=(client, index), daemon=True) for index, client in enumerate(clients)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(WAIT_SECONDS)
        for client in clients:
            client.flush(WAIT_SECONDS)
    finally:
        for client in clients:
            client.close()

    rows = {row["id"]: row for row in stored_messages(server.database_url)}
    assert len(rows) == SENDERS * MESSAGES_EACH
    for index, (client, account) in enumerate(zip(clients, accounts, strict=True)):
        assert client.rejected == []
        assert len(client.acked) == MESSAGES_EACH
        for client_id, message in client.acked.items():
            row = rows[message["id"]]
            assert (row["sender"], row["client_id"], row["body"], row["room"]) == (
                account.username,
                client_id,
                message["body"],
                room_of(index),
            )
    acked_ids = {m["id"] for client in clients for m in client.acked.values()}
    assert acked_ids == set(rows)

    log = server.log_text()
    assert "database is locked" not in log
    assert "OperationalError" not in log
    assert "error in / handler" not in log
