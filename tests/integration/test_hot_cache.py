"""The per-worker caches of the message path stay exact across two real workers (Redis and PostgreSQL).

Worker B answers `message` events from its cache of the sender's ban and mute state, the room and
the membership; the changes are made on worker A. Each test first has B cache the facts it then
changes, and checks /metrics that B did answer from its cache. The first event B handles after
A's ack must already see the change.
"""

from __future__ import annotations

import uuid

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Account, create_account
from tests.integration.recording_client import RecordingClient
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

ROUNDS = 5


def cache_hits(server: LiveServer) -> float:
    response = requests.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "switchboard_hot_cache_lookups_total" and sample.labels == {"result": "hit"}:
                return sample.value
    return 0.0


@pytest.fixture
def on(open_client):
    def connect(server: LiveServer, account: Account, namespaces: tuple[str, ...] = ("/",)) -> RecordingClient:
        client = open_client(server.url, "websocket", namespaces)
        client.connect(token=account.token)
        if "/" in namespaces:
            client.wait_for("session")
        return client

    return connect


def post(client: RecordingClient, room: str, body: str) -> dict:
    return client.call("message", {"room": room, "body": body, "client_id": uuid.uuid4().hex})


def code(answer: dict) -> str:
    return "ok" if answer["ok"] else answer["error"]["code"]


def moderate(admin: RecordingClient, action: str, **data) -> None:
    answer = admin.call(action, data, namespace="/admin")
    assert answer["ok"] is True, answer


def bodies(client: RecordingClient, room: str) -> list[str]:
    answer = client.call("history", {"room": room, "limit": 100})
    assert answer["ok"] is True, answer
    return [message["body"] for message in answer["messages"]]


def test_a_mute_and_an_unmute_on_one_worker_bite_at_once_on_the_other(cluster, on):
    admin, lena = create_account(cluster.a, admin=True), create_account(cluster.a)
    moderator = on(cluster.a, admin, ("/admin",))
    lena_on_b = on(cluster.b, lena)
    hits = cache_hits(cluster.b)
    # Muted first, so that B caches the mute: only the unmute's invalidation can let the next post in.
    for n in range(ROUNDS):
        moderate(moderator, "mute", user=lena.username, seconds=600)
        assert code(post(lena_on_b, "general", f"muted {n}")) == "muted"
        moderate(moderator, "unmute", user=lena.username)
        assert code(post(lena_on_b, "general", f"unmuted {n}")) == "ok"
    assert cache_hits(cluster.b) > hits, "worker B never answered from its cache"
    kept = bodies(lena_on_b, "general")
    assert [f"unmuted {n}" for n in range(ROUNDS)] == [b for b in kept if b.startswith(("muted", "unmuted"))]


def test_a_ban_on_one_worker_refuses_the_next_message_on_the_other(cluster, on):
    admin, mona, witness = create_account(cluster.a, admin=True), create_account(cluster.a), create_account(cluster.a)
    moderator = on(cluster.a, admin, ("/admin",))
    mona_on_b = on(cluster.b, mona)
    reader = on(cluster.b, witness)
    room = f"cache-{uuid.uuid4().hex[:10]}"
    for client in (mona_on_b, reader):
        assert client.call("join", {"room": room})["ok"] is True
    assert code(post(mona_on_b, room, "before the ban")) == "ok"
    hits = cache_hits(cluster.b)
    assert code(post(mona_on_b, room, "still before the ban")) == "ok"
    assert cache_hits(cluster.b) > hits, "worker B never answered from its cache"

    moderate(moderator, "ban", user=mona.username, reason="spam")
    # The ban also closes the socket: the message races that close, and is refused if it wins.
    answers: list[dict] = []
    try:
        mona_on_b.emit("message", {"room": room, "body": "after the ban", "client_id": "late"}, callback=answers.append)
    except socketio.exceptions.BadNamespaceError:
        pass  # already closed
    mona_on_b.wait_disconnected()
    assert all(code(answer) == "banned" for answer in answers), answers
    assert bodies(reader, room) == ["before the ban", "still before the ban"]


def test_leaving_on_one_worker_stops_posting_from_the_other_at_once(cluster, on):
    nina = create_account(cluster.a)
    on_a, on_b = on(cluster.a, nina), on(cluster.b, nina)
    room = f"cache-{uuid.uuid4().hex[:10]}"
    assert on_a.call("join", {"room": room})["ok"] is True
    hits = cache_hits(cluster.b)
    assert code(post(on_b, room, "member")) == "ok"
    assert code(post(on_b, room, "member again")) == "ok"
    assert cache_hits(cluster.b) > hits, "worker B never answered from its cache"
    for n in range(ROUNDS):
        assert on_a.call("leave", {"room": room})["ok"] is True
        assert code(post(on_b, room, f"left {n}")) == "forbidden"
        assert on_a.call("join", {"room": room})["ok"] is True
        assert code(post(on_b, room, f"back {n}")) == "ok"
    assert [b for b in bodies(on_a, room) if b.startswith(("left", "back"))] == [f"back {n}" for n in range(ROUNDS)]


def test_typing_from_the_other_worker_stops_with_the_membership(cluster, on):
    olga = create_account(cluster.a)
    on_a, on_b = on(cluster.a, olga), on(cluster.b, olga)
    room = f"cache-{uuid.uuid4().hex[:10]}"
    assert on_a.call("join", {"room": room})["ok"] is True
    assert code(on_b.call("typing", {"room": room, "active": True})) == "ok"
    assert on_a.call("leave", {"room": room})["ok"] is True
    assert code(on_b.call("typing", {"room": room, "active": True})) == "forbidden"
