"""Messages that reach one worker together are committed together, on SQLite too (one COMMIT, one
fsync, for the batch), and each is still answered with its own stored id."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from tests.integration.engineio_wire import RECORD_SEPARATOR, PollingSession
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

BURST = 15  # under the contract's 20 messages per 10 s of one user


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("group_commit_server")
    server = LiveServer(f"sqlite:///{directory / 'chat.db'}", directory / "server.log").start()
    yield server
    server.stop()


def commit_batches(server: LiveServer) -> tuple[float, float]:
    """(commits, messages committed) so far, from the worker's /metrics."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    values = {}
    for name in ("count", "sum"):
        found = re.search(rf"^switchboard_commit_batch_size_{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        assert found, f"no switchboard_commit_batch_size_{name} in /metrics"
        values[name] = float(found.group(1))
    return values["count"], values["sum"]


def test_a_burst_of_messages_is_committed_in_fewer_commits_than_messages(account, chat_server):
    session = PollingSession(chat_server.url, account().token)
    commits_before, committed_before = commit_batches(chat_server)
    client_ids = [uuid.uuid4().hex for _ in range(BURST)]
    packets = [
        f"42{n}" + json.dumps(["message", {"room": "general", "body": f"m{n}", "client_id": client_ids[n - 1]}])
        for n in range(1, BURST + 1)
    ]
    # One HTTP body: the worker starts every event's handler before any of them reaches the writer.
    assert session.post(RECORD_SEPARATOR.join(packets)).status_code == 200
    answers: dict[int, dict] = {}

    def collect(packet: str) -> bool:
        if packet.startswith("43"):
            digits = packet[2:].split("[", 1)[0]
            answers[int(digits)] = json.loads(packet[2 + len(digits) :])[0]
        return len(answers) == BURST

    session.read_until(collect)
    assert all(answer["ok"] for answer in answers.values()), answers
    ids = [answers[n]["message"]["id"] for n in range(1, BURST + 1)]
    assert len(set(ids)) == BURST
    assert ids == sorted(ids)  # stored in the order the socket sent them
    commits_after, committed_after = commit_batches(chat_server)
    assert committed_after - committed_before == BURST
    assert commits_after - commits_before < BURST, "every message paid its own commit"
