"""Two real servers sharing PostgreSQL and Redis behave as one chat server.

Clients on worker A and worker B exchange room messages and DMs, see one presence,
share one rate limit and can be moderated from either side; a third worker killed
with SIGKILL leaves no ghost online users once its heartbeat lapses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from tests.integration.conftest import PRESENCE_TTL_SECONDS, Account, create_account
from tests.integration.recording_client import RecordingClient
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

REAP_WAIT_SECONDS = 3 * PRESENCE_TTL_SECONDS + 5


@pytest.fixture
def on(open_client):
    """``on(server, account, transport)``: a client of that server, signed in with the account's token."""

    def connect(server: LiveServer, account: Account, transport: str = "websocket") -> RecordingClient:
        client = open_client(server.url, transport)
        client.connect(token=account.token)
        client.wait_for("session")
        return client

    return connect


@pytest.fixture
def account(cluster):
    def make(*, admin: bool = False) -> Account:
        return create_account(cluster.a, admin=admin)

    return make


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll a server-side fact that follows a client action without an event to wait for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.1)


def fresh_room() -> str:
    return f"scale-{uuid.uuid4().hex[:10]}"


def send(client: RecordingClient, room: str, body: str) -> dict:
    answer = client.call("message", {"room": room, "body": body, "client_id": uuid.uuid4().hex})
    assert answer["ok"] is True, answer
    return answer["message"]


def joined(client: RecordingClient, room: str) -> dict:
    answer = client.call("join", {"room": room})
    assert answer["ok"] is True, answer
    return answer


def with_body(body: str):
    return lambda data: isinstance(data, dict) and data.get("body") == body


def about(username: str):
    return lambda data: isinstance(data, dict) and data["user"]["username"] == username


def who(client: RecordingClient, room: str | None = None) -> dict[str, list[str]]:
    answer = client.call("who", {"room": room} if room else {})
    assert answer["ok"] is True, answer
    return {entry["user"]["username"]: entry["sids"] for entry in answer["users"]}


def test_a_room_message_reaches_members_on_the_other_worker_exactly_once(cluster, account, on):
    alice, bob, carol = account(), account(), account()
    room = fresh_room()
    sender = on(cluster.a, alice, "websocket")
    bob_on_b = on(cluster.b, bob, "polling")
    carol_on_b = on(cluster.b, carol, "websocket")
    carol_on_a = on(cluster.a, carol, "polling")
    for client in (sender, bob_on_b, carol_on_b):
        joined(client, room)

    first = send(sender, room, "hello from A")
    marker = send(sender, room, "marker")
    for client in (bob_on_b, carol_on_b, carol_on_a):
        client.wait_for("message", with_body("marker"))
        assert client.received("message", with_body("hello from A")) == [first]
    assert sender.received("message", lambda data: data.get("room") == room) == []
    assert marker["id"] > first["id"]


def test_dm_to_a_sid_on_the_other_worker_reaches_that_socket_and_the_senders_others(cluster, account, on):
    alice, bob = account(), account()
    sender = on(cluster.a, alice)
    sender_elsewhere = on(cluster.b, alice, "polling")
    target = on(cluster.b, bob)
    bobs_other = on(cluster.a, bob, "polling")

    answer = sender.call("dm", {"to_sid": target.sid, "body": "just this tab", "client_id": "dm-1"})
    assert answer["ok"] is True, answer
    assert answer["message"]["recipient"] == bob.user
    target.wait_for("dm", with_body("just this tab"))
    sender_elsewhere.wait_for("dm", with_body("just this tab"))

    marker = sender.call("dm", {"to_user": bob.username, "body": "marker", "client_id": "dm-2"})
    assert marker["ok"] is True, marker
    for client in (target, bobs_other, sender_elsewhere):
        client.wait_for("dm", with_body("marker"))
    assert len(target.received("dm", with_body("just this tab"))) == 1
    assert len(sender_elsewhere.received("dm", with_body("just this tab"))) == 1
    assert bobs_other.received("dm", with_body("just this tab")) == []
    assert sender.received("dm") == []


def test_dm_to_a_user_reaches_every_socket_on_both_workers(cluster, account, on):
    alice, bob = account(), account()
    sender = on(cluster.b, alice, "polling")
    sender_elsewhere = on(cluster.a, alice)
    bob_sockets = [on(cluster.a, bob), on(cluster.b, bob, "polling"), on(cluster.b, bob)]

    answer = sender.call("dm", {"to_user": bob.username, "body": "to every tab", "client_id": "dm-u"})
    assert answer["ok"] is True, answer
    for client in [*bob_sockets, sender_elsewhere]:
        assert client.wait_for("dm", with_body("to every tab")) == answer["message"]
    repeat = sender.call("dm", {"to_user": bob.username, "body": "changed", "client_id": "dm-u"})
    assert repeat["message"] == answer["message"]
    marker = sender.call("dm", {"to_user": bob.username, "body": "marker", "client_id": "dm-m"})
    assert marker["ok"] is True, marker
    for client in [*bob_sockets, sender_elsewhere]:
        client.wait_for("dm", with_body("marker"))
        assert len(client.received("dm", with_body("to every tab"))) == 1
        assert client.received("dm", with_body("changed")) == []


def test_join_and_leave_apply_to_the_users_sockets_on_both_workers(cluster, account, on):
    dave, erin = account(), account()
    room = fresh_room()
    erin_on_a = on(cluster.a, erin)
    joined(erin_on_a, room)
    dave_on_a = on(cluster.a, dave)
    dave_on_b = on(cluster.b, dave, "polling")

    answer = joined(dave_on_a, room)
    assert answer["room"]["members"] == 2
    send(erin_on_a, room, "after the join")
    for client in (dave_on_a, dave_on_b):
        client.wait_for("message", with_body("after the join"))
    assert sorted(who(dave_on_b, room)[dave.username]) == sorted([dave_on_a.sid, dave_on_b.sid])

    left = dave_on_b.call("leave", {"room": room})
    assert left == {"ok": True}
    send(erin_on_a, room, "after the leave")
    send(erin_on_a, "general", f"marker for {dave.username}")
    for client in (dave_on_a, dave_on_b):
        client.wait_for("message", with_body(f"marker for {dave.username}"))
        assert client.received("message", with_body("after the leave")) == []
    assert dave.username not in who(erin_on_a, room)


def test_who_and_presence_see_one_user_across_both_workers(cluster, account, on):
    watcher, frank, grace = account(), account(), account()
    watchers = [on(cluster.a, watcher), on(cluster.b, watcher, "polling")]

    frank_on_a = on(cluster.a, frank)
    frank_on_b = on(cluster.b, frank, "polling")
    for client in watchers:
        listed = who(client)
        assert sorted(listed[frank.username]) == sorted([frank_on_a.sid, frank_on_b.sid])
        assert sorted(listed[watcher.username]) == sorted(w.sid for w in watchers)

    frank_on_a.close()
    eventually(lambda: who(watchers[1])[frank.username] == [frank_on_b.sid], "frank's first socket leaving")
    frank_on_b.close()
    for client in watchers:
        client.wait_for("presence", lambda data: about(frank.username)(data) and data["online"] is False)
    assert frank.username not in who(watchers[0])

    on(cluster.b, grace)  # a later presence event: once it arrives, frank's are all in
    for client in watchers:
        client.wait_for("presence", about(grace.username))
        assert [data["online"] for data in client.received("presence", about(frank.username))] == [True, False]


def test_the_rate_limit_is_shared_by_both_workers(cluster, account, on):
    henry = account()
    room = fresh_room()
    sockets = [on(cluster.a, henry), on(cluster.b, henry, "polling")]
    joined(sockets[0], room)
    for n in range(20):
        send(sockets[n % 2], room, f"burst {n}")
    for client in sockets:
        refused = client.call("message", {"room": room, "body": "one too many", "client_id": uuid.uuid4().hex})
        assert refused["ok"] is False
        assert refused["error"]["code"] == "rate_limited"
    history = sockets[1].call("history", {"room": room, "limit": 100})
    assert [m["body"] for m in history["messages"]] == [f"burst {n}" for n in range(20)]


def test_an_admin_on_one_worker_kicks_and_bans_sockets_on_the_other(cluster, account, on, open_client):
    admin, ivan = account(admin=True), account()
    moderator = open_client(cluster.a.url, "websocket", namespaces=("/", "/admin"))
    moderator.connect(token=admin.token)

    kicked = on(cluster.b, ivan, "polling")
    answer = moderator.call("kick", {"sid": kicked.sid}, namespace="/admin")
    assert answer["ok"] is True, answer
    assert kicked.wait_for("kicked") == {"reason": "kicked by an admin"}
    kicked.wait_disconnected()

    on_b, on_a = on(cluster.b, ivan), on(cluster.a, ivan, "polling")
    answer = moderator.call("ban", {"user": ivan.username, "reason": "spam"}, namespace="/admin")
    assert answer["ok"] is True, answer
    for client in (on_b, on_a):
        assert client.wait_for("kicked") == {"reason": "banned"}
        client.wait_disconnected()
    eventually(lambda: ivan.username not in who(moderator), "ivan going offline everywhere")


def test_a_killed_worker_leaves_no_ghost_online_users(cluster, account, on):
    watcher, jack, kate, late = account(), account(), account(), account()
    doomed = LiveServer(cluster.database_url, cluster.directory / "doomed.log", env=cluster.env).start(migrate=False)
    try:
        watching = on(cluster.a, watcher)
        jack_on_doomed = on(doomed, jack)
        on(doomed, kate, "polling")
        kate_on_b = on(cluster.b, kate)
        watching.wait_for("presence", lambda data: about(jack.username)(data) and data["online"] is True)
        assert jack.username in who(watching)
        ghost_sid = jack_on_doomed.sid
        doomed.kill()
    finally:
        doomed.stop()

    offline = watching.wait_for(
        "presence",
        lambda data: about(jack.username)(data) and data["online"] is False,
        timeout=REAP_WAIT_SECONDS,
    )
    assert offline["user"] == jack.user
    listed = who(watching)
    assert jack.username not in listed
    # Worker A registered the watcher before the doomed worker's last heartbeat: only A's own heartbeat kept it.
    assert listed[watcher.username] == [watching.sid]
    assert listed[kate.username] == [kate_on_b.sid]
    answer = watching.call("dm", {"to_sid": ghost_sid, "body": "anyone?", "client_id": "ghost"})
    assert answer["ok"] is False and answer["error"]["code"] == "not_found"

    on(cluster.b, late)
    watching.wait_for("presence", about(late.username))
    assert [data["online"] for data in watching.received("presence", about(jack.username))] == [True, False]
    assert [data["online"] for data in watching.received("presence", about(kate.username))] == [True]
