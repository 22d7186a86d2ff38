"""What operators see of a live server: /metrics (restricted, multiprocess-safe) and JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import time

import prometheus_client
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.recording_client import RecordingClient
from tests.support import api
from tests.support.live_server import ROOT, VENV_BIN, LiveServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
TOKEN = "scrape-secret-token"
BODY_MARKER = "body-that-must-never-be-logged"


def scrape(server: LiveServer, token: str | None = TOKEN) -> dict[tuple[str, tuple], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def account(server: LiveServer) -> dict:
    return api.register_and_token(server.url, api.new_username("obs"), PASSWORD)


@pytest.fixture
def client_factory():
    clients: list[RecordingClient] = []

    def connect(server: LiveServer, token: str) -> RecordingClient:
        client = RecordingClient(server.url, transport="websocket")
        clients.append(client)
        return client.connect(token=token)

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def observed_server(tmp_path_factory):
    """One worker, JSON logs, /metrics for no address (the token only), and a small rate limit."""
    directory = tmp_path_factory.mktemp("observed")
    server = LiveServer(
        f"sqlite:///{directory / 'chat.db'}",
        directory / "server.log",
        env={
            "LOG_FORMAT": "json",
            "METRICS_ALLOWED_IPS": "192.0.2.1",  # not the test's loopback address
            "METRICS_TOKEN": TOKEN,
            "RATE_LIMIT_COUNT": "4",
        },
    ).start()
    yield server
    server.stop()


def test_metrics_move_with_connections_events_acks_and_refusals(observed_server, client_factory):
    server = observed_server
    ann = account(server)
    before = scrape(server)

    client = client_factory(server, ann["token"])
    # Every attempt counts against the limit of 4, the malformed one included.
    invalid = client.call("message", {"room": "general", "body": 42, "client_id": "bad"})
    sent = [client.call("message", {"room": "general", "body": f"hi {i}", "client_id": f"m{i}"}) for i in range(4)]
    who = client.call("who", {})
    after = scrape(server)

    assert [answer["ok"] for answer in sent] == [True, True, True, False]
    assert sent[3]["error"]["code"] == "rate_limited"
    assert invalid["error"]["code"] == "invalid" and who["ok"] is True
    assert value(after, "switchboard_sockets_connected", namespace="/", transport="websocket") == 1
    assert delta(before, after, "switchboard_socket_connects_total", namespace="/", outcome="accepted") == 1
    assert delta(before, after, "switchboard_socket_events_total", namespace="/", event="message") == 5
    assert delta(before, after, "switchboard_socket_acks_total", namespace="/", event="message", code="ok") == 3
    assert delta(before, after, "switchboard_socket_acks_total", namespace="/", event="message", code="invalid") == 1
    assert (
        delta(before, after, "switchboard_socket_acks_total", namespace="/", event="message", code="rate_limited") == 1
    )
    assert delta(before, after, "switchboard_rate_limited_total", namespace="/", event="message") == 1
    assert delta(before, after, "switchboard_socket_ack_seconds_count", namespace="/", event="message") == 5
    assert delta(before, after, "switchboard_socket_ack_seconds_count", namespace="/", event="who") == 1
    assert value(after, "switchboard_socket_ack_seconds_sum", namespace="/", event="message") > 0

    refused = RecordingClient(server.url, transport="websocket")
    try:
        refused.connect_refused(token="not-a-token")
    finally:
        refused.close()
    client.close()
    later = scrape(server)
    assert delta(after, later, "switchboard_socket_connects_total", namespace="/", outcome="refused") == 1
    assert value(later, "switchboard_sockets_connected", namespace="/", transport="websocket") == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}],
    ids=["no token", "wrong token", "not bearer", "empty bearer"],
)
def test_metrics_are_refused_to_a_disallowed_address_without_the_token(observed_server, headers):
    response = requests.get(f"{observed_server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "switchboard_" not in response.text


def parsed(text: str) -> list[dict]:
    """Every line of ``text``, each of which must be one JSON object."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(lines[-1], dict), line
    return lines


def json_lines(server: LiveServer) -> list[dict]:
    """The server's log lines (gunicorn's and the app's, stdout and stderr), each one JSON object."""
    return parsed(server.log_text())


def wait_for_line(server: LiveServer, match, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in json_lines(server) if match(line)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no such log line:\n" + server.log_text()[-4000:]
        time.sleep(0.1)


def test_json_logs_have_one_line_per_request_connection_and_refused_event(observed_server, client_factory):
    server = observed_server
    bob = account(server)
    bob_id = bob["user"]["id"]
    rooms = requests.get(f"{server.url}/api/rooms", headers={"Authorization": f"Bearer {bob['token']}"}, timeout=10)
    assert rooms.status_code == 200

    client = client_factory(server, bob["token"])
    sid = client.sid
    stored = client.call("message", {"room": "general", "body": BODY_MARKER, "client_id": "logged?"})
    assert stored["ok"] is True
    refused = client.call("dm", {"to_user": "nobody-by-that-name", "body": BODY_MARKER, "client_id": "d1"})
    assert refused["ok"] is False
    client.close()

    request_line = wait_for_line(
        server, lambda line: line.get("kind") == "request" and line.get("path") == "/api/rooms"
    )
    assert request_line["method"] == "GET" and request_line["status"] == 200
    assert request_line["user_id"] == bob_id
    assert request_line["duration_ms"] >= 0 and request_line["remote_addr"] == "127.0.0.1"

    connect_line = wait_for_line(server, lambda line: line.get("kind") == "connect" and line.get("sid") == sid)
    assert connect_line["outcome"] == "accepted" and connect_line["user_id"] == bob_id
    assert connect_line["namespace"] == "/" and connect_line["transport"] == "websocket"

    event_line = wait_for_line(server, lambda line: line.get("kind") == "event" and line.get("sid") == sid)
    assert event_line["event"] == "dm" and event_line["outcome"] == "refused"
    assert event_line["code"] == refused["error"]["code"] and event_line["user_id"] == bob_id
    # Accepted events are counted in the metrics, not logged one by one.
    assert [line for line in json_lines(server) if line.get("kind") == "event" and line.get("sid") == sid] == [
        event_line
    ]

    disconnect_line = wait_for_line(server, lambda line: line.get("kind") == "disconnect" and line.get("sid") == sid)
    assert disconnect_line["user_id"] == bob_id

    bad = RecordingClient(server.url, transport="websocket")
    try:
        bad.connect_refused(token="forged")
    finally:
        bad.close()
    refused_line = wait_for_line(
        server, lambda line: line.get("kind") == "connect" and line.get("outcome") == "refused"
    )
    assert refused_line["reason"] == "unauthorized" and refused_line["user_id"] is None

    # One line per request: the access log's, not the server's as well.
    assert [line for line in json_lines(server) if "/api/rooms" in line["message"]] == [request_line]
    text = server.log_text()
    assert BODY_MARKER not in text
    assert PASSWORD not in text
    assert bob["token"] not in text


def test_a_json_server_logs_only_json_lines_from_migration_through_start_and_stop(live_server_factory, tmp_path):
    environment = {"LOG_FORMAT": "json", "RATE_LIMIT_COUNT": "1000"}
    migration = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'migrated.db'}", **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    migrated = parsed(migration.stderr + migration.stdout)
    assert any(
        line["logger"] == "alembic.runtime.migration" and "Running upgrade" in line["message"] for line in migrated
    )

    server = live_server_factory(env=environment)
    ann = account(server)
    client = RecordingClient(server.url, transport="websocket")
    try:
        client.connect(token=ann["token"])
        assert client.call("message", {"room": "general", "body": BODY_MARKER, "client_id": "j1"})["ok"] is True
        # A refused packet that carries a body: the guard logs one line about it.
        client.sio.eio.send('2["message",{"room":"general","body":"' + BODY_MARKER + '"')
        client.sio.sleep(0.5)
    finally:
        client.close()
    assert requests.get(f"{server.url}/no-such-page", timeout=10).status_code == 404
    refused = requests.post(f"{server.url}/api/token", json={"username": "nobody", "password": PASSWORD}, timeout=10)
    assert refused.status_code == 401
    log_path = server.log_path
    server.stop()

    text = log_path.read_text()
    lines = parsed(text)
    gunicorn = [line["message"] for line in lines if line["logger"] == "gunicorn.error"]
    for expected in (
        "Starting gunicorn",
        "Listening at",
        "Booting worker",
        "Handling signal: term",
        "Shutting down: Master",
    ):
        assert any(message.startswith(expected) for message in gunicorn), (expected, gunicorn)
    assert any(line["logger"] == "switchboard.sockets.guard" for line in lines), text
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert BODY_MARKER not in text
    assert PASSWORD not in text
    assert ann["token"] not in text


def test_metrics_add_up_across_workers(live_server_factory, tmp_path, client_factory):
    """Two workers write to PROMETHEUS_MULTIPROC_DIR; a scrape of either reports both."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_99999.db").write_bytes(b"left over from an earlier run")
    server = live_server_factory(workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "METRICS_TOKEN": TOKEN})
    assert not (multiproc / "counter_99999.db").exists()
    before = scrape(server)
    clients = [client_factory(server, account(server)["token"]) for _ in range(6)]
    for index, client in enumerate(clients):
        assert client.call("message", {"room": "general", "body": "hi", "client_id": f"w{index}"})["ok"] is True

    # Each worker refreshes its own socket count every few seconds; the counters are exact at once.
    after = scrape(server)
    assert delta(before, after, "switchboard_socket_acks_total", namespace="/", event="message", code="ok") == 6
    assert delta(before, after, "switchboard_socket_connects_total", namespace="/", outcome="accepted") == 6
    deadline = time.monotonic() + 15
    while value(scrape(server), "switchboard_sockets_connected", namespace="/", transport="websocket") != 6:
        assert time.monotonic() < deadline, scrape(server)
        time.sleep(0.5)
