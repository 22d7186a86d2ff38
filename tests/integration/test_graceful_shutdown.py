"""A gunicorn worker stopped with SIGTERM in the middle of a burst loses nothing it acknowledged."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time

import pytest

from app.client import SwitchboardClient
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    assert_all_converge,
    essentials,
    seed_accounts,
    stored_messages,
)

ROOM = "shutdown"
MESSAGES_EACH = 80
SERVER_ENV = {"RATE_LIMIT_COUNT": "100000"}
TRANSPORTS = [["websocket"], None, ["polling"]]
WAIT_SECONDS = 60
CLOSED_WITHIN_SECONDS = 2


def worker_pids(master_pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def wait_for_worker(master_pid: int, other_than: int | None = None) -> int:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        pids = [pid for pid in worker_pids(master_pid) if pid != other_than]
        if len(pids) == 1:
            return pids[0]
        assert time.monotonic() < deadline, f"workers of {master_pid}: {worker_pids(master_pid)}"
        time.sleep(0.05)


@pytest.mark.integration
@pytest.mark.timeout(200)
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_a_worker_stopped_mid_burst_loses_nothing_acknowledged(live_server_factory):
    server = live_server_factory(env=SERVER_ENV)
    master = server.process.pid
    worker = wait_for_worker(master)
    accounts = seed_accounts(server, len(TRANSPORTS), prefix="shutdown", rooms=(ROOM,))
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
        os.kill(worker, signal.SIGTERM)
        stopped = time.monotonic()
        acked_before_stop = {cid: m for client in clients for cid, m in client.acked.items()}
        assert len(acked_before_stop) < total, "the burst was over before the stop"

        # The worker closes every socket at once rather than holding them until graceful_timeout (5 s).
        while f"stopping: closed {len(clients)} connections" not in server.log_text():
            assert time.monotonic() - stopped < CLOSED_WITHIN_SECONDS, "the stopping worker kept its sockets"
            time.sleep(0.05)
        while worker in worker_pids(master):
            assert time.monotonic() - stopped < 15, "the stopped worker lingers"
            time.sleep(0.05)
        replacement = wait_for_worker(master, other_than=worker)
        stored_at_stop = {row["client_id"]: row for row in stored_messages(server.database_url)}
        for client_id, message in acked_before_stop.items():
            assert client_id in stored_at_stop, f"acked message {message['id']} lost by the stop"
            assert stored_at_stop[client_id]["id"] == message["id"]

        for client in clients:
            client.flush(WAIT_SECONDS)
        expected = assert_all_converge(clients, server.database_url, ROOM, WAIT_SECONDS)
        rows = stored_messages(server.database_url)
        reconnected = [client.connections for client in clients]
    finally:
        for client in clients:
            client.close()
        clients_left = len(clients)
        clients.clear()
        gc.collect()

    assert clients_left == len(TRANSPORTS)
    assert all(connections >= 2 for connections in reconnected)  # each lost the worker and came back
    assert replacement != worker
    assert len(expected) == total
    for account in accounts:
        mine = [row for row in rows if row["sender"] == account.username]
        assert [(r["client_id"], r["body"]) for r in mine] == [
            (item.client_id, item.payload["body"]) for item in sent[account.username]
        ]
        assert all(item.message is not None and item.error is None for item in sent[account.username])
        acked = {item.client_id: item.message["id"] for item in sent[account.username]}
        assert acked == {r["client_id"]: r["id"] for r in mine}
    assert essentials(rows) == expected
    log = server.log_text()
    assert f"Worker exiting (pid: {worker})" in log
    assert "database is locked" not in log
