"""A gunicorn worker stopped with SIGTERM in the middle of a burst loses nothing it acknowledged."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
import websocket

from app.client import SwitchboardClient
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    assert_all_converge,
    essentials,
    seed_accounts,
    stored_messages,
)
from tests.integration.engineio_wire import PollingSession, WebSocketSession, socketio_path

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
    assert "Worker graceful timeout" not in log
    assert "database is locked" not in log


def ended(connection: socket.socket) -> bool:
    """Whether the server ended ``connection`` (EOF or reset) before its read timeout."""
    try:
        while connection.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def websocket_ended(ws) -> bool:
    try:
        while True:
            if ws.recv() in ("", b"", None):
                return True
    except websocket.WebSocketTimeoutException:
        return False
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_stopping_worker_ends_idle_upgrading_polling_and_websocket_connections_at_once(live_server_factory):
    """None of these holds the worker until graceful_timeout: not a kept-alive connection that waits
    for its next request, not a websocket in the middle of an upgrade, not a long poll."""
    server = live_server_factory()
    master = server.process.pid
    worker = wait_for_worker(master)
    [account] = seed_accounts(server, 1, prefix="linger")
    address = ("127.0.0.1", server.port)
    ws_base = server.url.replace("http://", "ws://", 1)

    idle = socket.create_connection(address, timeout=WAIT_SECONDS)
    idle.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        answer += idle.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" not in answer.lower()

    def polling_handshake() -> str:
        response = requests.get(socketio_path(server.url, "polling"), timeout=WAIT_SECONDS)
        assert response.text.startswith("0{"), response.text
        return json.loads(response.text[1:])["sid"]

    # An upgrade whose probe never comes, and one whose probe was answered but whose "5" never comes.
    no_probe = websocket.create_connection(
        f"{socketio_path(ws_base, 'websocket')}&sid={polling_handshake()}", timeout=WAIT_SECONDS, suppress_origin=True
    )
    probed_sid = polling_handshake()
    probed = websocket.create_connection(
        f"{socketio_path(ws_base, 'websocket')}&sid={probed_sid}", timeout=WAIT_SECONDS, suppress_origin=True
    )
    probed.send("2probe")
    assert probed.recv() == "3probe"
    signed_in = WebSocketSession(server.url, account.token)
    polling = PollingSession(server.url, account.token)
    long_poll: list = []
    poller = threading.Thread(target=lambda: long_poll.append(polling.poll()), daemon=True)
    poller.start()
    time.sleep(0.5)  # the long poll is waiting on the server
    assert poller.is_alive()
    try:
        os.kill(worker, signal.SIGTERM)
        stopped = time.monotonic()
        # Well inside graceful_timeout (5 s), after which gunicorn would cut them anyway.
        for connection in (idle, no_probe.sock, probed.sock, signed_in.ws.sock):
            connection.settimeout(max(CLOSED_WITHIN_SECONDS * 2 - (time.monotonic() - stopped), 0.1))
        assert ended(idle), "a kept-alive idle connection held the stopping worker"
        assert websocket_ended(no_probe), "a websocket waiting for its upgrade probe held the stopping worker"
        assert websocket_ended(probed), "a websocket waiting for its upgrade packet held the stopping worker"
        assert websocket_ended(signed_in.ws), "a websocket held the stopping worker"
        poller.join(CLOSED_WITHIN_SECONDS * 2)
        assert long_poll, "a long poll held the stopping worker"
        while worker in worker_pids(master):
            assert time.monotonic() - stopped < 15, "the stopped worker lingers"
            time.sleep(0.05)
    finally:
        idle.close()
        for ws in (no_probe, probed, signed_in.ws):
            ws.shutdown()
        polling.http.close()
    log = server.log_text()
    assert f"Worker exiting (pid: {worker})" in log
    assert "Worker graceful timeout" not in log
