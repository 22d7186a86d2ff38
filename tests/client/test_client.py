"""SwitchboardClient against a real server, and its outbox and timeline on their own."""

from __future__ import annotations

import gc
import itertools
import socket
import subprocess
import sys
import threading
import time

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
        assert reader.cursor == expected[-1][-1]  # the rev of the newest message

        writer = open_client(ann).connect()
        live = writer.send("backlog", "live one").wait(WAIT_SECONDS)
        assert reader.wait_for(lambda: live["id"] in {m["id"] for m in reader.room_messages("backlog")}, WAIT_SECONDS)
        assert reader.duplicates_dropped == 0
        # The live message is past the cursor, so the catch-up after a drop brings it again: merged once.
        proxy.drop()
        assert reader.wait_for(lambda: reader.connections == 2, WAIT_SECONDS)
        reader.wait_synced(WAIT_SECONDS)
        assert reader.duplicates_dropped == 1
        assert reader.cursor == live["rev"]
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


def stored_room(server, room: str) -> list[tuple]:
    return essentials([row for row in stored_messages(server.database_url) if row["room"] == room])


@pytest.mark.integration
def test_edit_delete_and_react_answer_the_stored_message_and_reach_the_others_live(server, open_client):
    ann, bob = accounts(server, 2, rooms=("changes",))
    writer = open_client(ann).connect()
    reader = open_client(bob, transports=["websocket"]).connect()
    cursor = reader.cursor
    first = writer.send("changes", "first draft").wait(WAIT_SECONDS)
    second = writer.send("changes", "to be deleted").wait(WAIT_SECONDS)

    edited = writer.edit(first["id"], "final words")
    assert (edited["body"], edited["edited_at"] is not None) == ("final words", True)
    assert edited["rev"] > second["rev"]
    reacted = reader.react(first["id"], "👍")
    assert reacted["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.username]}]
    assert reacted["body"] == "final words" and reacted["rev"] > edited["rev"]
    assert reader.react(first["id"], "👍") == reacted  # the same reaction again changes nothing
    deleted = writer.delete(second["id"])
    assert (deleted["deleted"], deleted["body"]) == (True, "")
    with pytest.raises(MessageRejected) as refused:
        reader.edit(first["id"], "not mine")
    assert refused.value.code == "forbidden"
    with pytest.raises(MessageRejected) as refused:
        writer.edit(second["id"], "too late")
    assert refused.value.code == "not_found"

    expected = stored_room(server, "changes")
    assert [m[-1] for m in expected] == [reacted["rev"], deleted["rev"]]
    for client in (writer, reader):
        assert client.wait_for(lambda c=client: essentials(c.room_messages("changes")) == expected, WAIT_SECONDS)
    # Live events and acks never move the rev cursor: only sync pages do.
    assert reader.cursor == cursor
    assert writer.rejected and all(item.client_id is None for item in writer.rejected)
    assert set(writer.acked) == {first["client_id"], second["client_id"]}


@pytest.mark.integration
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_a_client_away_during_edits_deletions_and_reactions_converges_when_it_is_back(server, open_client):
    ann, bob = accounts(server, 2, rooms=("away",))
    proxy = DroppingProxy(server.port)
    try:
        writer = open_client(ann).connect()
        reader = open_client(bob, url=proxy.url, transports=["websocket"], reconnection_delay=0.05).connect()
        posted = [writer.send("away", f"message {n}").wait(WAIT_SECONDS) for n in range(4)]
        own = reader.send("away", "bob's own").wait(WAIT_SECONDS)
        reader.react(posted[2]["id"], "👀")
        assert reader.wait_for(lambda: len(reader.room_messages("away")) == 5, WAIT_SECONDS)

        proxy.refusing = True
        proxy.drop()
        assert reader.wait_for(lambda: not reader.connected, WAIT_SECONDS)
        writer.edit(posted[0]["id"], "message 0, edited")
        writer.edit(posted[0]["id"], "message 0, edited twice")
        writer.react(posted[1]["id"], "🎉")
        writer.react(own["id"], "👍")
        writer.react(posted[2]["id"], "🎉")
        writer.react(posted[2]["id"], "🎉", active=False)
        writer.react(posted[3]["id"], "🎉")
        writer.delete(posted[3]["id"])  # its reactions go with it
        late = writer.send("away", "sent while bob was away").wait(WAIT_SECONDS)
        assert not reader.connected

        proxy.refusing = False
        assert reader.wait_for(lambda: reader.connections == 2, WAIT_SECONDS)
        reader.wait_synced(WAIT_SECONDS)
        expected = stored_room(server, "away")
        assert essentials(reader.room_messages("away")) == expected
        assert reader.cursor == max(m[-1] for m in expected) == late["rev"]
        by_id = {m["id"]: m for m in reader.room_messages("away")}
        assert by_id[posted[0]["id"]]["body"] == "message 0, edited twice"
        assert by_id[posted[2]["id"]]["reactions"] == [{"emoji": "👀", "count": 1, "users": [bob.username]}]
        assert (by_id[posted[3]["id"]]["deleted"], by_id[posted[3]["id"]]["reactions"]) == (True, [])
        assert by_id[own["id"]]["reactions"] == [{"emoji": "👍", "count": 1, "users": [ann.username]}]
    finally:
        proxy.close()
        gc.collect()


@pytest.mark.integration
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_a_repeated_delete_whose_ack_was_lost_answers_the_deleted_message(server, open_client):
    [ann] = accounts(server, 1, rooms=("lost-ack",))
    proxy = DroppingProxy(server.port)
    try:
        client = open_client(
            ann, url=proxy.url, transports=["websocket"], ack_timeout=1.0, reconnection_delay=0.05
        ).connect()
        posted = client.send("lost-ack", "delete me").wait(WAIT_SECONDS)
        proxy.swallowing = True  # the delete is applied, its ack never arrives
        answers: list = []
        deleting = threading.Thread(target=lambda: answers.append(client.delete(posted["id"], timeout=WAIT_SECONDS)))
        deleting.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not [row for row in stored_messages(server.database_url) if row["id"] == posted["id"]][0]["deleted"]:
            assert time.monotonic() < deadline, "the delete never reached the server"
            time.sleep(0.1)
        assert client.pending and client.pending[0].event == "delete"
        proxy.swallowing = False
        proxy.drop()
        deleting.join(WAIT_SECONDS)

        [deleted] = answers
        assert (deleted["id"], deleted["deleted"], deleted["body"]) == (posted["id"], True, "")
        assert essentials([deleted]) == stored_room(server, "lost-ack")
        assert client.rejected == [] and client.pending == []
        assert client.connections >= 2
    finally:
        proxy.close()
        gc.collect()


@pytest.mark.integration
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_a_connection_that_stops_answering_is_replaced_and_the_message_stored_once(server, open_client):
    [ann] = accounts(server, 1, rooms=("mute-line",))
    threads_before = set(threading.enumerate())
    proxy = DroppingProxy(server.port)
    try:
        client = open_client(
            ann, url=proxy.url, transports=["websocket"], ack_timeout=1.0, reconnection_delay=0.05
        ).connect()
        proxy.swallowing = True  # the connection stays open, and nothing comes back on it
        item = client.send("mute-line", "through a silent line")
        assert client.wait_for(lambda: client.replaced_connections >= 1, WAIT_SECONDS)
        assert not item.settled.is_set()
        proxy.swallowing = False
        stored = item.wait(WAIT_SECONDS)
        assert item.attempts >= 2
        assert essentials([stored]) == stored_room(server, "mute-line")
        assert client.wait_for(lambda: essentials(client.room_messages("mute-line")) == [essentials([stored])[0]], 5)
        assert client.connections >= 2
        client.close()
        # Neither the replaced connection nor the last one keeps reconnecting after the close.
        for thread in threading.enumerate():
            if thread.name == "switchboard-client-shut":
                thread.join(10)
        reconnecting = [
            t.name for t in threading.enumerate() if "_handle_reconnect" in t.name and t not in threads_before
        ]
        assert reconnecting == []
    finally:
        proxy.close()
        gc.collect()


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


def test_timeline_rev_cursor_moves_only_when_told_and_never_back():
    timeline = Timeline(cursor=2)
    timeline.merge(message(9, rev=30))  # live events and acks never move it
    assert timeline.cursor == 2
    timeline.advance(7)
    timeline.advance(4)
    assert timeline.cursor == 7


def test_timeline_keeps_the_copy_with_the_higher_rev():
    timeline = Timeline()
    timeline.merge(message(1, rev=1))
    timeline.merge(message(1, rev=5, body="edited", edited_at="2026-01-01T00:01:00.000Z"))
    assert not timeline.merge(message(1, rev=3, body="an older edit arriving late"))
    assert not timeline.merge(message(1, rev=1))
    [kept] = timeline.messages()
    assert (kept["body"], kept["rev"]) == ("edited", 5)
    assert (timeline.updates_applied, timeline.duplicates_dropped) == (1, 2)


def test_timeline_replaces_reactions_wholesale():
    thumbs = {"emoji": "👍", "count": 2, "users": ["ann", "bob"]}
    eyes = {"emoji": "👀", "count": 1, "users": ["cid"]}
    timeline = Timeline()
    timeline.merge(message(1, rev=4, reactions=[thumbs, eyes]))
    timeline.merge(message(1, rev=6, reactions=[{"emoji": "👀", "count": 1, "users": ["cid"]}]))
    assert timeline.messages()[0]["reactions"] == [eyes]
    timeline.merge(message(1, rev=7, reactions=[]))
    assert timeline.messages()[0]["reactions"] == []


def test_timeline_deletion_wins_over_an_older_edit():
    timeline = Timeline()
    timeline.merge(message(1, rev=1))
    timeline.merge(message(1, rev=9, deleted=True, body="", reactions=[]))
    timeline.merge(message(1, rev=8, body="an edit overtaken by the deletion"))
    assert [(m["deleted"], m["body"], m["rev"]) for m in timeline.messages()] == [(True, "", 9)]


def test_timeline_message_deleted_event_then_the_deletion_with_its_rev():
    timeline = Timeline()
    timeline.merge(message(1, rev=3, reactions=[{"emoji": "👍", "count": 1, "users": ["bob"]}]))
    timeline.mark_deleted(1)  # `message_deleted` carries no rev
    [held] = timeline.messages()
    assert (held["deleted"], held["body"], held["reactions"], held["rev"]) == (True, "", [], 3)
    timeline.merge(message(1, rev=4, body="an edit whose event came late"))
    assert timeline.messages()[0]["deleted"]
    timeline.merge(message(1, rev=6, deleted=True, body="", reactions=[]))
    assert timeline.messages()[0]["rev"] == 6
    timeline.mark_deleted(1)
    assert timeline.messages()[0]["rev"] == 6


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


def test_outbox_sends_changes_without_client_id_and_keeps_them_out_of_acked():
    outbox = Outbox()
    post = outbox.add("message", {"room": "general", "body": "one"})
    edit = outbox.add("edit", {"id": 10, "body": "two"})
    assert edit.client_id is None and "client_id" not in edit.payload
    outbox.settle(post, {"ok": True, "message": message(10, client_id=post.client_id)})
    assert outbox.head() is edit
    outbox.settle(edit, {"ok": True, "message": message(10, client_id=post.client_id, body="two", rev=2)})
    assert edit.wait(0)["body"] == "two"
    assert list(outbox.acked) == [post.client_id] and len(outbox) == 0


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


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_reconnection_started_after_the_shut_is_stopped():
    # A drop handled just before `reconnection` was turned off starts python-socketio's
    # reconnection loop after the shut; that loop never reads `reconnection` again.
    sio = socketio.Client(reconnection=True, reconnection_delay=0.01, reconnection_delay_max=0.02)
    sio.connection_url, sio.connection_headers, sio.connection_auth = f"http://127.0.0.1:{closed_port()}", {}, None
    sio.connection_transports, sio.connection_namespaces, sio.socketio_path = ["polling"], ["/"], "socket.io"
    SwitchboardClient._shut(sio)
    sio._reconnect_task = sio.start_background_task(sio._handle_reconnect)  # its connects are refused
    time.sleep(0.1)
    assert sio._reconnect_task.is_alive()
    task = sio._reconnect_task
    assert SwitchboardClient._stop_reconnecting(sio) is False
    assert not task.is_alive()
