"""SwitchboardClient against a real server, and its outbox and timeline on their own."""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys

import pytest
import socketio

from app.client import MessageRejected, RequestFailed, SwitchboardClient, Timeline
from app.client.outbox import RETRYABLE_CODES, Outbox
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    DroppingProxy,
    essentials,
    seed_accounts,
    seed_messages,
    stored_messages,
)
from tests.support.live_server import ROOT, LiveServer

WAIT_SECONDS = 30
_prefixes = (f"cl{n}x" for n in itertools.count())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("client_server")
    live = LiveServer(
        f"sqlite:///{directory / 'client.db'}", directory / "server.log", env={"RATE_LIMIT_COUNT": "100000"}
    ).start()
    yield live
    live.stop()


@pytest.fixture
def open_client(server):
    """``open_client(account, url=server.url, **SwitchboardClient options)``; all closed at teardown."""
    clients: list[SwitchboardClient] = []

    def make(account, url: str | None = None, **options) -> SwitchboardClient:
        client = SwitchboardClient(url or server.url, account.token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def accounts(server, count: int, rooms=("general",)):
    return seed_accounts(server, count, prefix=next(_prefixes), rooms=rooms)


def test_importing_the_client_loads_no_gevent():
    probe = "import sys, app.client; print(sorted(m for m in sys.modules if m.startswith('gevent')))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.integration
def test_messages_sent_before_connecting_go_out_once_in_order(server, open_client):
    [ann] = accounts(server, 1, rooms=("early",))
    client = open_client(ann, transports=["polling"])
    items = [client.send("early", f"early {n}") for n in range(5)]
    assert client.pending == items
    client.connect()
    client.flush(WAIT_SECONDS)
    acked = [item.wait(0) for item in items]
    assert [m["body"] for m in acked] == [f"early {n}" for n in range(5)]
    assert [m["id"] for m in acked] == sorted(m["id"] for m in acked)
    assert essentials(client.room_messages("early")) == essentials(
        [row for row in stored_messages(server.database_url) if row["room"] == "early"]
    )


@pytest.mark.integration
def test_a_refused_token_fails_connect_with_the_reason(server):
    client = SwitchboardClient(server.url, "not-a-token", transports=["websocket"])
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(timeout=WAIT_SECONDS)
    assert client.refusal == "unauthorized"
    assert not client.connected


@pytest.mark.integration
def test_a_repeated_client_id_is_stored_once_and_answered_with_the_stored_message(server, open_client):
    [ann] = accounts(server, 1, rooms=("repeat",))
    client = open_client(ann).connect()
    first = client.send("repeat", "the original", client_id="same-id").wait(WAIT_SECONDS)
    again = client.send("repeat", "a different body", client_id="same-id").wait(WAIT_SECONDS)
    assert again == first
    rows = [row for row in stored_messages(server.database_url) if row["room"] == "repeat"]
    assert [(r["client_id"], r["body"]) for r in rows] == [("same-id", "the original")]
    assert [m["body"] for m in client.room_messages("repeat")] == ["the original"]


@pytest.mark.integration
def test_a_refused_message_is_rejected_for_good_and_the_outbox_moves_on(server, open_client):
    [ann] = accounts(server, 1, rooms=("refusals",))
    client = open_client(ann, transports=["websocket"]).connect()
    too_long = client.send("refusals", "x" * 4001)
    unknown_room = client.send("nowhere-" + ann.username.lower(), "hello")
    fine = client.send("refusals", "this one is fine")
    with pytest.raises(MessageRejected) as refused:
        too_long.wait(WAIT_SECONDS)
    assert refused.value.code == "too_large"
    with pytest.raises(MessageRejected) as refused:
        unknown_room.wait(WAIT_SECONDS)
    assert refused.value.code == "not_found"
    assert fine.wait(WAIT_SECONDS)["body"] == "this one is fine"
    assert client.rejected == [too_long, unknown_room]
    assert [row["body"] for row in stored_messages(server.database_url) if row["sender"] == ann.username] == [
        "this one is fine"
    ]
    with pytest.raises(RequestFailed) as failed:
        client.call("sync", {"after": -1})
    assert failed.value.code == "invalid"


@pytest.mark.integration
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_catching_up_pages_through_sync_and_merges_live_messages_once(server, open_client):
    ann, bob = accounts(server, 2, rooms=("backlog",))
    seed_messages(server, ann, "backlog", 520)  # more than one sync page of 500
    proxy = DroppingProxy(server.port)
    try:
        reader = open_client(bob, url=proxy.url, transports=["websocket"], reconnection_delay=0.05).connect()
        expected = essentials([row for row in stored_messages(server.database_url) if row["room"] == "backlog"])
        assert essentials(reader.room_messages("backlog")) == expected
        assert reader.cursor == expected[-1][0]

        writer = open_client(ann).connect()
        live = writer.send("backlog", "live one").wait(WAIT_SECONDS)
        assert reader.wait_for(lambda: live["id"] in {m["id"] for m in reader.room_messages("backlog")}, WAIT_SECONDS)
        assert reader.duplicates_dropped == 0
        # The live message is past the cursor, so the catch-up after a drop brings it again: merged once.
        proxy.drop()
        assert reader.wait_for(lambda: reader.connections == 2, WAIT_SECONDS)
        reader.wait_synced(WAIT_SECONDS)
        assert reader.duplicates_dropped == 1
        assert reader.cursor == live["id"]
        assert [m["body"] for m in reader.room_messages("backlog")][-2:] == ["seeded #0519", "live one"]
        assert len(reader.room_messages("backlog")) == 521
    finally:
        proxy.close()
        gc.collect()


@pytest.mark.integration
def test_direct_messages_reach_both_sides_once(server, open_client):
    ann, bob = accounts(server, 2)
    ann_client = open_client(ann).connect()
    bob_client = open_client(bob, transports=["websocket"]).connect()
    sent = ann_client.send_dm(bob.username, "psst").wait(WAIT_SECONDS)
    assert sent["recipient"]["username"] == bob.username
    assert bob_client.wait_for(lambda: bob_client.dm_messages(ann.username) == [sent], WAIT_SECONDS)
    assert ann_client.dm_messages(bob.username) == [sent]


@pytest.mark.integration
def test_join_brings_recent_history_into_the_timeline(server, open_client):
    ann, bob = accounts(server, 2, rooms=())
    first = open_client(ann).connect()
    first.join("late-room-" + ann.username.lower())
    posted = first.send("late-room-" + ann.username.lower(), "before bob came").wait(WAIT_SECONDS)
    second = open_client(bob).connect()
    room = second.join("late-room-" + ann.username.lower())
    assert room["members"] == 2
    assert second.room_messages("late-room-" + ann.username.lower()) == [posted]


# -- the parts on their own ---------------------------------------------------------------


def message(message_id: int, room: str | None = "general", **fields) -> dict:
    return {
        "id": message_id,
        "room": room,
        "sender": {"id": 1, "username": "ann", "is_admin": False},
        "recipient": None if room else {"id": 2, "username": "Bob", "is_admin": False},
        "body": f"body {message_id}",
        "client_id": None,
        "created_at": "2026-01-01T00:00:00.000Z",
        "deleted": False,
        **fields,
    }


def test_timeline_keeps_one_copy_per_id_in_id_order():
    timeline = Timeline()
    assert timeline.merge(message(5))
    assert timeline.merge(message(3))
    assert not timeline.merge(message(5, body="another copy"))
    assert [m["id"] for m in timeline.messages()] == [3, 5]
    assert timeline.messages()[1]["body"] == "body 5"
    assert timeline.duplicates_dropped == 1


def test_timeline_cursor_moves_only_when_told():
    timeline = Timeline(cursor=2)
    timeline.merge(message(9))
    assert timeline.cursor == 2
    timeline.advance(7)
    timeline.advance(4)
    assert timeline.cursor == 7


def test_timeline_takes_deletions_from_events_and_later_copies():
    timeline = Timeline()
    timeline.merge(message(1))
    timeline.merge(message(2))
    timeline.mark_deleted(1)
    timeline.merge(message(2, deleted=True, body=""))
    assert [(m["deleted"], m["body"]) for m in timeline.messages()] == [(True, ""), (True, "")]


def test_timeline_splits_rooms_and_direct_conversations():
    timeline = Timeline()
    timeline.merge(message(1, room="general"))
    timeline.merge(message(2, room=None))
    timeline.merge(message(3, room="other"))
    assert [m["id"] for m in timeline.room("general")] == [1]
    assert [m["id"] for m in timeline.direct("bob")] == [2]


def test_outbox_keeps_the_client_id_and_order_until_acked():
    outbox = Outbox()
    first = outbox.add("message", {"room": "general", "body": "one"})
    second = outbox.add("message", {"room": "general", "body": "two", "client_id": "mine"})
    assert second.client_id == "mine" and len(first.client_id) == 32
    assert outbox.head() is first
    outbox.settle(first, {"ok": True, "message": message(10, client_id=first.client_id)})
    assert outbox.head() is second
    assert outbox.acked == {first.client_id: message(10, client_id=first.client_id)}
    assert first.wait(0)["id"] == 10


@pytest.mark.parametrize("code", sorted(RETRYABLE_CODES))
def test_outbox_retries_passing_refusals_later_with_the_same_client_id(code):
    outbox = Outbox()
    item = outbox.add("message", {"room": "general", "body": "one"})
    item.attempts = 1
    outbox.settle(item, {"ok": False, "error": {"code": code, "message": "later"}})
    assert outbox.head() is item and not item.settled.is_set()
    assert outbox.ready_in(0.0) > 0


@pytest.mark.parametrize("code", ["invalid", "too_large", "forbidden", "not_found", "muted", "banned"])
def test_outbox_gives_up_on_refusals_about_the_message(code):
    outbox = Outbox()
    item = outbox.add("message", {"room": "general", "body": "one"})
    outbox.settle(item, {"ok": False, "error": {"code": code, "message": "no"}})
    assert len(outbox) == 0 and outbox.rejected == [item]
    with pytest.raises(MessageRejected) as rejected:
        item.wait(0)
    assert rejected.value.code == code
