"""The /admin namespace: who may connect, every event, its effect on `/`, and the audit log."""

import time

import pytest
import sqlalchemy as sa

from app.extensions import db, socketio
from app.models import AuditEntry
from app.services import users
from app.sockets.admin import AdminNamespace
from tests.support.moderation import ban, let_mute_lapse

ADMIN = "/admin"

READ_ONLY_EVENTS = {
    "stats": {},
    "sockets": {},
    "users": {"query": ""},
    "audit": {},
}
ACTIONS = {
    "kick": {"sid": "whatever"},
    "ban": {"user": "alice"},
    "unban": {"user": "alice"},
    "mute": {"user": "alice"},
    "unmute": {"user": "alice"},
    "delete_message": {"id": 1},
    "announce": {"body": "hello"},
}
EVENTS = {**READ_ONLY_EVENTS, **ACTIONS}


def ask(sio, event: str, payload=None, namespace: str = ADMIN) -> dict:
    return sio.emit(event, {} if payload is None else payload, namespace=namespace, callback=True)


def received(sio, event: str, namespace: str = "/") -> list:
    """Payloads of ``event`` the client got, taken off its queue; readable after a disconnect too
    (``get_received`` refuses then), which is when a `kicked` is checked."""
    taken = [m for m in list(sio.queue) if m["namespace"] == namespace and m["name"] == event]
    for message in taken:
        sio.queue.remove(message)
    return [m["args"][0] for m in taken]


def audit_actions(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(e.action, e.target) for e in db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))]


def fresh_user(app, username: str):
    with app.app_context():
        user = users.find_user(username)
        db.session.expunge(user)
        return user


@pytest.fixture
def admin(make_user):
    return make_user("boss", admin=True)


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def admin_socket(socket_client, admin):
    sio = socket_client(admin, ADMIN)
    assert sio.is_connected(ADMIN)
    return sio


# -- who may connect -----------------------------------------------------------


def test_anonymous_sockets_are_refused(app):
    sio = socketio.test_client(app, namespace=ADMIN)
    assert not sio.is_connected(ADMIN)


def test_bad_tokens_are_refused(app):
    sio = socketio.test_client(app, namespace=ADMIN, auth={"token": "forged"})
    assert not sio.is_connected(ADMIN)


def test_non_admins_are_refused(socket_client, alice):
    sio = socket_client(alice, ADMIN)
    assert not sio.is_connected(ADMIN)


def test_admins_connect_with_a_token(app, admin):
    with app.app_context():
        token = users.issue_token(users.find_user("boss"), app.config["SECRET_KEY"], 60)["token"]
    sio = socketio.test_client(app, namespace=ADMIN, auth={"token": token})
    assert sio.is_connected(ADMIN)
    assert ask(sio, "stats")["ok"] is True
    sio.disconnect(namespace=ADMIN)


def test_admin_and_chat_namespaces_share_one_connection(admin_socket):
    admin_socket.connect(namespace="/")
    assert admin_socket.is_connected("/") and admin_socket.is_connected(ADMIN)
    [session] = received(admin_socket, "session")
    assert session["user"]["username"] == "boss"


# -- authorization on every event --------------------------------------------------


def revoke_by_demotion(app, username):
    with app.app_context():
        users.set_admin(username, False)


def revoke_by_ban(app, username):
    with app.app_context():
        ban(username, "gone rogue")


@pytest.mark.parametrize("revoke", [revoke_by_demotion, revoke_by_ban], ids=["demoted", "banned"])
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_an_admin_who_loses_the_right_while_connected_can_do_nothing(
    app, socket_client, admin_socket, alice, revoke, event
):
    chat = socket_client(alice)
    chat.get_received("/")
    revoke(app, "boss")
    audited = audit_actions(app)  # a ban by another admin is itself audited

    if revoke is revoke_by_ban:
        # A ban disconnects every socket of the user, the dashboard's included.
        assert not admin_socket.is_connected(ADMIN)
    else:
        answer = ask(admin_socket, event, EVENTS[event])
        assert answer == {"ok": False, "error": {"code": "forbidden", "message": "admins only"}}
    assert chat.is_connected("/")
    assert received(chat, "announcement") == []
    alice_now = fresh_user(app, "alice")
    assert not alice_now.banned and alice_now.muted_until is None
    assert audit_actions(app) == audited


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("payload", ["text", 5, [1], True])
def test_payloads_that_are_not_objects_are_invalid(app, admin_socket, event, payload):
    answer = ask(admin_socket, event, payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid"
    assert admin_socket.is_connected(ADMIN)
    assert audit_actions(app) == []


def test_unknown_events_are_answered_invalid(admin_socket):
    answer = ask(admin_socket, "self_destruct")
    assert answer["ok"] is False and answer["error"]["code"] == "invalid"


# -- read-only events ------------------------------------------------------------------


def test_stats_counts_users_sockets_rooms_and_recent_messages(app, socket_client, admin_socket, alice, make_user):
    first = socket_client(alice)
    second = socket_client(alice)
    bob = make_user("bob")
    socket_client(bob)
    assert ask(first, "join", {"room": "lobby"}, namespace="/")["ok"]
    assert ask(second, "message", {"room": "general", "body": "hi", "client_id": "c1"}, namespace="/")["ok"]

    answer = ask(admin_socket, "stats")

    assert answer["ok"] is True
    stats = answer["stats"]
    assert stats["users_online"] == 2
    assert stats["sockets"] == 3
    assert stats["messages_last_minute"] == 1
    assert stats["rooms"] == [
        {"name": "general", "members": 3, "online": 2, "topic": "", "private": False},
        {"name": "lobby", "members": 1, "online": 1, "topic": "", "private": False},
    ]
    assert audit_actions(app) == []


def test_sockets_lists_every_chat_socket(app, socket_client, admin_socket, alice):
    chat = socket_client(alice)
    [session] = received(chat, "session")

    answer = ask(admin_socket, "sockets")

    assert answer["ok"] is True
    [listed] = answer["sockets"]
    assert listed["sid"] == session["sid"]
    assert listed["user"] == alice.to_dict()
    assert listed["rooms"] == ["general"]
    assert isinstance(listed["transport"], str)
    assert listed["connected_at"].endswith("Z")
    assert audit_actions(app) == []


def test_users_search_shows_moderation_state_and_presence(app, socket_client, admin_socket, alice, make_user):
    make_user("alicia")
    socket_client(alice)
    assert ask(admin_socket, "mute", {"user": "alicia", "seconds": 60})["ok"]

    answer = ask(admin_socket, "users", {"query": "ali"})

    assert answer["ok"] is True
    by_name = {u["username"]: u for u in answer["users"]}
    assert list(by_name) == ["alice", "alicia"]
    assert by_name["alice"]["online"] is True and by_name["alicia"]["online"] is False
    assert by_name["alice"]["muted_until"] is None
    assert by_name["alicia"]["muted_until"].endswith("Z")
    assert by_name["alice"]["banned"] is False
    assert ask(admin_socket, "users", {"query": 7})["error"]["code"] == "invalid"


def test_audit_lists_actions_newest_first_with_a_limit(admin_socket, alice, admin):
    ask(admin_socket, "mute", {"user": "alice"})
    ask(admin_socket, "announce", {"body": "hello"})
    ask(admin_socket, "stats")
    ask(admin_socket, "sockets")

    entries = ask(admin_socket, "audit")["entries"]

    assert [(e["action"], e["target"]) for e in entries] == [("announce", "everyone"), ("mute", "alice")]
    assert entries[0]["admin"] == admin.to_dict()
    assert entries[0]["created_at"].endswith("Z")
    assert [e["action"] for e in ask(admin_socket, "audit", {"limit": 1})["entries"]] == ["announce"]
    assert ask(admin_socket, "audit", {"limit": "all"})["error"]["code"] == "invalid"


def test_each_audit_entry_names_the_user_it_concerns(socket_client, admin_socket, alice, make_user):
    bob = make_user("bob")
    kicked = socket_client(alice)
    [session] = received(kicked, "session")
    author = socket_client(bob)
    posted = ask(author, "message", {"room": "general", "body": "oops", "client_id": "c1"}, namespace="/")["message"]
    assert ask(admin_socket, "kick", {"sid": session["sid"]})["ok"]
    assert ask(admin_socket, "delete_message", {"id": posted["id"]})["ok"]
    assert ask(admin_socket, "mute", {"user": "ALICE"})["ok"]
    assert ask(admin_socket, "announce", {"body": "hello"})["ok"]

    entries = ask(admin_socket, "audit")["entries"]

    subjects = [(e["action"], e["user"]["username"] if e["user"] else None) for e in entries]
    assert subjects == [("announce", None), ("mute", "alice"), ("delete_message", "bob"), ("kick", "alice")]
    assert entries[2]["user"] == bob.to_dict()


# -- kick --------------------------------------------------------------------------------


def test_kick_tells_the_socket_then_disconnects_it(app, socket_client, admin_socket, alice):
    kicked = socket_client(alice)
    other = socket_client(alice)
    [session] = received(kicked, "session")

    answer = ask(admin_socket, "kick", {"sid": session["sid"]})

    assert answer["ok"] is True
    assert received(kicked, "kicked") == [{"reason": "kicked by an admin"}]
    assert not kicked.is_connected("/")
    assert other.is_connected("/")
    assert [s["sid"] for s in ask(admin_socket, "sockets")["sockets"]] != [session["sid"]]
    assert audit_actions(app) == [("kick", session["sid"])]


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"sid": "no-such-socket"}, "not_found"), ({"sid": 5}, "invalid"), ({}, "invalid"), ({"sid": ""}, "invalid")],
)
def test_kick_refuses_unknown_or_malformed_sids(app, socket_client, admin_socket, alice, payload, code):
    chat = socket_client(alice)

    answer = ask(admin_socket, "kick", payload)

    assert answer["ok"] is False and answer["error"]["code"] == code
    assert chat.is_connected("/")
    assert audit_actions(app) == []


# -- ban / unban ---------------------------------------------------------------------------


def test_ban_disconnects_every_socket_of_the_user_and_refuses_them(
    app, socket_client, admin_socket, alice, make_user, login, client
):
    first = socket_client(alice)
    second = socket_client(alice)
    bystander = socket_client(make_user("bob"))

    answer = ask(admin_socket, "ban", {"user": "alice", "reason": "spam"})

    assert answer["ok"] is True
    assert answer["user"]["banned"] is True and answer["user"]["ban_reason"] == "spam"
    for sio in (first, second):
        assert received(sio, "kicked") == [{"reason": "banned"}]
        assert not sio.is_connected("/")
    assert bystander.is_connected("/")
    assert ask(admin_socket, "sockets")["sockets"][0]["user"]["username"] == "bob"
    assert audit_actions(app) == [("ban", "alice")]

    form = app.test_client().post("/login", data={"username": "alice", "password": alice.password})
    assert form.status_code == 403
    token = client.post("/api/token", json={"username": "alice", "password": alice.password})
    assert token.status_code == 403 and token.get_json()["error"]["code"] == "banned"


def test_unban_lets_the_user_back_in(app, socket_client, admin_socket, alice, login):
    ask(admin_socket, "ban", {"user": "alice"})
    assert app.test_client().post("/login", data={"username": "alice", "password": alice.password}).status_code == 403

    answer = ask(admin_socket, "unban", {"user": "alice"})

    assert answer["ok"] is True and answer["user"]["banned"] is False
    chat = socket_client(alice)
    assert chat.is_connected("/")
    assert audit_actions(app) == [("ban", "alice"), ("unban", "alice")]


def test_a_session_cookie_from_before_the_ban_cannot_open_a_socket(app, socket_client, admin_socket, alice, login):
    cookie_client = login(alice)
    ask(admin_socket, "ban", {"user": "alice"})

    assert not socketio.test_client(app, flask_test_client=cookie_client).is_connected("/")
    assert not socketio.test_client(app, namespace=ADMIN, flask_test_client=cookie_client).is_connected(ADMIN)


def test_banning_an_admin_also_closes_their_admin_sockets(app, socket_client, admin_socket, make_user):
    other_admin = make_user("deputy", admin=True)
    deputy = socket_client(other_admin, ADMIN)
    deputy.connect(namespace="/")

    assert ask(admin_socket, "ban", {"user": "deputy"})["ok"] is True

    assert received(deputy, "kicked", ADMIN) == [{"reason": "banned"}]
    assert not deputy.is_connected(ADMIN) and not deputy.is_connected("/")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"user": "nobody"}, "not_found"),
        ({}, "invalid"),
        ({"user": ["alice"]}, "invalid"),
        ({"user": "alice", "reason": 5}, "invalid"),
        ({"user": "alice", "reason": "x" * 501}, "too_large"),
        ({"user": "boss"}, "forbidden"),
    ],
)
def test_bad_bans_change_nothing(app, socket_client, admin_socket, alice, payload, code):
    chat = socket_client(alice)

    answer = ask(admin_socket, "ban", payload)

    assert answer["ok"] is False and answer["error"]["code"] == code
    assert chat.is_connected("/")
    assert not fresh_user(app, "alice").banned and not fresh_user(app, "boss").banned
    assert audit_actions(app) == []


# -- mute / unmute ---------------------------------------------------------------------------


def test_mute_refuses_messages_and_dms_until_unmuted(app, socket_client, admin_socket, alice, make_user):
    make_user("bob")
    chat = socket_client(alice)

    answer = ask(admin_socket, "mute", {"user": "alice", "seconds": 600})

    assert answer["ok"] is True and answer["user"]["muted_until"].endswith("Z")
    said = ask(chat, "message", {"room": "general", "body": "hi", "client_id": "m1"}, namespace="/")
    assert said["ok"] is False and said["error"]["code"] == "muted"
    whispered = ask(chat, "dm", {"to_user": "bob", "body": "hi", "client_id": "d1"}, namespace="/")
    assert whispered["ok"] is False and whispered["error"]["code"] == "muted"

    assert ask(admin_socket, "unmute", {"user": "alice"})["ok"] is True
    assert ask(chat, "message", {"room": "general", "body": "hi", "client_id": "m2"}, namespace="/")["ok"] is True
    assert audit_actions(app) == [("mute", "alice"), ("unmute", "alice")]


def test_a_lapsed_mute_is_honoured_without_a_restart(app, socket_client, admin_socket, alice):
    chat = socket_client(alice)
    ask(admin_socket, "mute", {"user": "alice", "seconds": 600})
    with app.app_context():
        let_mute_lapse("alice")

    said = ask(chat, "message", {"room": "general", "body": "back", "client_id": "m1"}, namespace="/")

    assert said["ok"] is True


@pytest.mark.parametrize(
    "payload",
    [{"user": "alice", "seconds": 0}, {"user": "alice", "seconds": "60"}, {"user": "alice", "seconds": 2.5}, {}],
)
def test_bad_mutes_change_nothing(app, admin_socket, alice, payload):
    answer = ask(admin_socket, "mute", payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid"
    assert fresh_user(app, "alice").muted_until is None
    assert audit_actions(app) == []


# -- delete_message ---------------------------------------------------------------------------


def test_delete_room_message_notifies_the_room_and_history_shows_it_deleted(
    app, socket_client, admin_socket, alice, make_user
):
    author = socket_client(alice)
    reader = socket_client(make_user("bob"))
    outsider = socket_client(make_user("carol"))
    for sio in (author, reader):
        assert ask(sio, "join", {"room": "lobby"}, namespace="/")["ok"]
    posted = ask(author, "message", {"room": "lobby", "body": "oops", "client_id": "c1"}, namespace="/")["message"]
    for sio in (author, reader, outsider):
        sio.get_received("/")

    answer = ask(admin_socket, "delete_message", {"id": posted["id"]})

    assert answer["ok"] is True and answer["message"]["deleted"] is True
    expected = {"id": posted["id"], "room": "lobby"}
    assert received(reader, "message_deleted") == [expected]
    assert received(author, "message_deleted") == [expected]
    assert received(outsider, "message_deleted") == []
    history = ask(reader, "history", {"room": "lobby"}, namespace="/")["messages"]
    assert [(m["id"], m["deleted"], m["body"]) for m in history] == [(posted["id"], True, "")]
    synced = ask(reader, "sync", {"after": 0}, namespace="/")["messages"]
    assert [(m["deleted"], m["body"]) for m in synced if m["id"] == posted["id"]] == [(True, "")]
    assert audit_actions(app) == [("delete_message", str(posted["id"]))]


def test_delete_direct_message_notifies_both_people(app, socket_client, admin_socket, alice, make_user):
    sender = socket_client(alice)
    recipient = socket_client(make_user("bob"))
    outsider = socket_client(make_user("carol"))
    posted = ask(sender, "dm", {"to_user": "bob", "body": "psst", "client_id": "d1"}, namespace="/")["message"]
    for sio in (sender, recipient, outsider):
        sio.get_received("/")

    assert ask(admin_socket, "delete_message", {"id": posted["id"]})["ok"] is True

    expected = {"id": posted["id"], "room": None}
    assert received(sender, "message_deleted") == [expected]
    assert received(recipient, "message_deleted") == [expected]
    assert received(outsider, "message_deleted") == []
    history = ask(recipient, "dm_history", {"user": "alice"}, namespace="/")["messages"]
    assert [(m["deleted"], m["body"]) for m in history] == [(True, "")]


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"id": 999_999}, "not_found"), ({"id": "1"}, "invalid"), ({"id": 0}, "invalid"), ({}, "invalid")],
)
def test_bad_deletes_change_nothing(app, admin_socket, payload, code):
    answer = ask(admin_socket, "delete_message", payload)
    assert answer["ok"] is False and answer["error"]["code"] == code
    assert audit_actions(app) == []


# -- announce ---------------------------------------------------------------------------------


def test_announce_reaches_every_chat_socket(app, socket_client, admin_socket, alice, make_user, admin):
    listeners = [socket_client(alice), socket_client(alice), socket_client(make_user("bob"))]

    answer = ask(admin_socket, "announce", {"body": "  maintenance at noon "})

    assert answer["ok"] is True
    for sio in listeners:
        [announcement] = received(sio, "announcement")
        assert announcement["body"] == "maintenance at noon"
        assert announcement["from"] == admin.to_dict()
        assert announcement["created_at"].endswith("Z")
    assert audit_actions(app) == [("announce", "everyone")]


@pytest.mark.parametrize(
    ("payload", "code"), [({"body": ""}, "invalid"), ({"body": 5}, "invalid"), ({"body": "x" * 4001}, "too_large")]
)
def test_bad_announcements_reach_nobody(app, socket_client, admin_socket, alice, payload, code):
    chat = socket_client(alice)

    answer = ask(admin_socket, "announce", payload)

    assert answer["ok"] is False and answer["error"]["code"] == code
    assert received(chat, "announcement") == []
    assert audit_actions(app) == []


# -- the periodic stats push ---------------------------------------------------------------------


def admin_namespace() -> AdminNamespace:
    return socketio.server.namespace_handlers[ADMIN]


def test_one_stats_task_pushes_to_every_admin_and_stops_when_none_is_left(app, socket_client, admin, make_user):
    app.config["STATS_INTERVAL_SECONDS"] = 0.05
    first = socket_client(admin, ADMIN)
    task = admin_namespace().stats_task
    second = socket_client(make_user("deputy", admin=True), ADMIN)

    assert task is not None
    assert admin_namespace().stats_task is task
    for sio in (first, second):
        pushed = wait_for(lambda sio=sio: received(sio, "stats", ADMIN))
        assert set(pushed[0]) == {"users_online", "sockets", "rooms", "messages_last_minute"}

    first.disconnect(namespace=ADMIN)
    second.disconnect(namespace=ADMIN)
    task.join(timeout=10)
    assert not task.is_alive()
    assert admin_namespace().stats_task is None


def test_no_stats_task_when_the_interval_is_zero(app, admin_socket):
    assert app.config["STATS_INTERVAL_SECONDS"] == 0
    assert admin_namespace().stats_task is None


def wait_for(probe, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("nothing arrived in time")
