"""Conversations through the Socket.IO test client: edit, delete, react, mentions, private rooms,
invitations, topics, the room directory, DM read markers, sync after a rev and the session's
mentions and DMs, with who gets which event."""

from __future__ import annotations

import pytest

from app.extensions import socketio

ADMIN = "/admin"


class Tab:
    """One signed-in `/` socket: a browser tab. Keeps what it received until a test looks at it."""

    def __init__(self, sio, session: dict):
        self.sio = sio
        self.session = session
        self.sid = session["sid"]
        self.inbox: list[dict] = []

    def send(self, event: str, payload=None) -> dict:
        return self.sio.emit(event, payload, callback=True)

    def ok(self, event: str, payload=None) -> dict:
        answer = self.send(event, payload)
        assert answer["ok"] is True, answer
        return answer

    def refused(self, event: str, payload) -> str:
        answer = self.send(event, payload)
        assert answer["ok"] is False, answer
        assert set(answer) == {"ok", "error"} and set(answer["error"]) == {"code", "message"}
        return answer["error"]["code"]

    def got(self, name: str) -> list:
        """Payloads of every ``name`` event received so far, taken off the inbox."""
        self.inbox += self.sio.get_received()
        taken = [event for event in self.inbox if event["name"] == name]
        self.inbox = [event for event in self.inbox if event["name"] != name]
        # The test client unwraps the single argument of "message" events only.
        return [event["args"] if name == "message" else event["args"][0] for event in taken]

    def forget(self) -> None:
        self.sio.get_received()
        self.inbox = []


@pytest.fixture
def limits() -> dict:
    """Config values a test overrides with ``@pytest.mark.parametrize("limits", [{...}])``."""
    return {}


@pytest.fixture
def app_settings(limits):
    return limits


@pytest.fixture
def open_tab(socket_client):
    def open_(user) -> Tab:
        sio = socket_client(user)
        sessions = [event["args"][0] for event in sio.get_received() if event["name"] == "session"]
        assert len(sessions) == 1
        return Tab(sio, sessions[0])

    return open_


@pytest.fixture
def people(make_user, open_tab):
    """ann with two tabs, bob and cat with one each, all in general."""
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    return ann, bob, cat, open_tab(ann), open_tab(ann), open_tab(bob), open_tab(cat)


def forget(*tabs: Tab) -> None:
    for tab in tabs:
        tab.forget()


def say(tab: Tab, body: str, room: str = "general", **extra) -> dict:
    return tab.ok("message", {"room": room, "body": body, "client_id": f"{tab.sid}-{body}", **extra})["message"]


# -- edit, delete, react -------------------------------------------------------------------


def test_edit_answers_the_message_and_every_other_socket_of_the_room_gets_message_updated(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(ann1, "draft")
    forget(ann1, ann2, bob1, cat1)

    answer = ann1.ok("edit", {"id": posted["id"], "body": " final "})

    assert set(answer) == {"ok", "message"}
    edited = answer["message"]
    assert (edited["body"], edited["id"]) == ("final", posted["id"])
    assert edited["rev"] > posted["rev"] and edited["edited_at"].endswith("Z")
    for tab in (ann2, bob1, cat1):
        assert tab.got("message_updated") == [edited]
    assert ann1.got("message_updated") == []


def test_edit_is_for_the_sender_and_the_body_rules_hold(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(ann1, "mine")
    forget(ann1, ann2, bob1, cat1)
    assert bob1.refused("edit", {"id": posted["id"], "body": "yours"}) == "forbidden"
    assert bob1.refused("edit", {"id": posted["id"] + 100, "body": "yours"}) == "not_found"
    assert ann1.refused("edit", {"id": posted["id"], "body": "  "}) == "invalid"
    assert ann1.refused("edit", {"id": posted["id"], "body": "x" * 4001}) == "too_large"
    assert ann1.refused("edit", {"id": str(posted["id"]), "body": "x"}) == "invalid"
    assert ann1.refused("edit", ["not", "an", "object"]) == "invalid"
    for tab in (ann1, ann2, bob1, cat1):
        assert tab.got("message_updated") == []
    assert bob1.ok("history", {"room": "general"})["messages"] == [posted]


def test_delete_sends_message_updated_and_message_deleted_to_the_others(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(bob1, "regret")
    forget(ann1, ann2, bob1, cat1)
    assert ann1.refused("delete", {"id": posted["id"]}) == "forbidden"

    deleted = bob1.ok("delete", {"id": posted["id"]})["message"]

    assert (deleted["deleted"], deleted["body"], deleted["reactions"], deleted["attachments"]) == (True, "", [], [])
    for tab in (ann1, ann2, cat1):
        assert tab.got("message_updated") == [deleted]
        assert tab.got("message_deleted") == [{"id": posted["id"], "room": "general"}]
    assert bob1.got("message_updated") == [] and bob1.got("message_deleted") == []
    assert bob1.refused("delete", {"id": posted["id"]}) == "not_found"


def test_react_updates_others_and_a_repeat_tells_no_one(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(ann1, "vote")
    forget(ann1, ann2, bob1, cat1)

    reacted = bob1.ok("react", {"id": posted["id"], "emoji": "👍", "active": True})["message"]
    assert reacted["reactions"] == [{"emoji": "👍", "count": 1, "users": ["bob"]}]
    for tab in (ann1, ann2, cat1):
        assert tab.got("message_updated") == [reacted]
    assert bob1.got("message_updated") == []

    assert bob1.ok("react", {"id": posted["id"], "emoji": "👍", "active": True})["message"] == reacted
    for tab in (ann1, ann2, bob1, cat1):
        assert tab.got("message_updated") == []

    removed = bob1.ok("react", {"id": posted["id"], "emoji": "👍", "active": False})["message"]
    assert removed["reactions"] == [] and removed["rev"] > reacted["rev"]
    assert cat1.got("message_updated") == [removed]

    assert bob1.refused("react", {"id": posted["id"], "emoji": "a b", "active": True}) == "invalid"
    assert bob1.refused("react", {"id": posted["id"], "emoji": "👍"}) == "invalid"
    assert bob1.refused("react", {"id": posted["id"] + 100, "emoji": "👍", "active": True}) == "not_found"


def test_the_21st_different_emoji_is_a_conflict(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(ann1, "many")
    for n in range(20):  # two reactors, to stay within the send limit
        (ann1 if n < 10 else bob1).ok("react", {"id": posted["id"], "emoji": f":e{n}:", "active": True})
    assert cat1.refused("react", {"id": posted["id"], "emoji": ":e20:", "active": True}) == "conflict"
    again = cat1.ok("react", {"id": posted["id"], "emoji": ":e3:", "active": True})["message"]
    assert again["reactions"][3] == {"emoji": ":e3:", "count": 2, "users": ["ann", "cat"]}
    assert len(again["reactions"]) == 20


def test_changes_to_a_dm_reach_both_parties_sockets_but_the_acting_one(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = ann1.ok("dm", {"to_user": "bob", "body": "psst", "client_id": "d1"})["message"]
    forget(ann1, ann2, bob1, cat1)

    edited = ann1.ok("edit", {"id": posted["id"], "body": "psst!"})["message"]
    reacted = bob1.ok("react", {"id": posted["id"], "emoji": "🤫", "active": True})["message"]
    assert cat1.refused("react", {"id": posted["id"], "emoji": "🤫", "active": True}) == "not_found"
    deleted = ann2.ok("delete", {"id": posted["id"]})["message"]

    assert ann1.got("message_updated") == [reacted, deleted]
    assert ann2.got("message_updated") == [edited, reacted]
    assert bob1.got("message_updated") == [edited, deleted]
    assert cat1.got("message_updated") == []
    for tab in (ann1, bob1):
        assert tab.got("message_deleted") == [{"id": posted["id"], "room": None}]
    assert ann2.got("message_deleted") == [] and cat1.got("message_deleted") == []


def test_reply_to_must_name_a_message_of_the_same_conversation(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    question = say(bob1, "question")
    answer = say(ann1, "answer", reply_to=question["id"])
    assert answer["reply_to"] == question["id"]
    assert bob1.got("message")[-1] == answer
    private = bob1.ok("dm", {"to_user": "cat", "body": "between us", "client_id": "d1"})["message"]
    assert ann1.refused("message", {"room": "general", "body": "x", "client_id": "r1", "reply_to": private["id"]}) == (
        "not_found"
    )
    assert (
        ann1.refused("dm", {"to_user": "bob", "body": "x", "client_id": "r2", "reply_to": private["id"]}) == "not_found"
    )


# -- mentions -------------------------------------------------------------------------------


def test_mention_goes_to_every_socket_of_each_mentioned_member_but_the_sender(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    ann1.ok("join", {"room": "dev"})
    bob1.ok("join", {"room": "dev"})
    forget(ann1, ann2, bob1, cat1)

    posted = say(ann1, "@bob @cat @ann look", room="dev")

    assert posted["mentions"] == ["bob", "cat", "ann"]
    assert bob1.got("mention") == [{"message": posted}]
    assert cat1.got("mention") == []  # not a member of dev
    assert ann1.got("mention") == [] and ann2.got("mention") == []

    edited = ann1.ok("edit", {"id": posted["id"], "body": "@bob @ann look"})["message"]
    assert bob1.got("mention") == []
    cat1.ok("join", {"room": "dev"})
    edited = ann1.ok("edit", {"id": posted["id"], "body": "@bob @cat look again"})["message"]
    assert cat1.got("mention") == [{"message": edited}]
    assert bob1.got("mention") == []


def test_session_counts_unread_mentions_per_room(people, open_tab):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    first = say(bob1, "@ann one")
    say(bob1, "@ann two")
    say(ann1, "@ann myself")
    assert open_tab(ann).session["mentions"] == {"general": 2}
    ann1.ok("read", {"room": "general", "id": first["id"]})
    assert open_tab(ann).session["mentions"] == {"general": 1}
    assert open_tab(cat).session["mentions"] == {"general": 0}


# -- DMs in the session, DM read markers ----------------------------------------------------


def test_a_dm_sent_while_the_recipient_was_offline_is_in_their_session(app, make_user, open_tab):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    ann1 = open_tab(ann)
    assert ann1.session["dms"] == []
    ann1.ok("dm", {"to_user": "cat", "body": "older", "client_id": "d0"})
    sent = ann1.ok("dm", {"to_user": "bob", "body": "while you were out", "client_id": "d1"})["message"]

    session = open_tab(bob).session

    assert session["dms"] == [{"user": ann.to_dict(), "unread": 1, "last": sent}]
    assert [(entry["user"]["username"], entry["unread"]) for entry in open_tab(ann).session["dms"]] == [
        ("bob", 0),
        ("cat", 0),
    ]
    assert open_tab(cat).session["dms"][0]["unread"] == 1


def test_read_with_a_user_moves_the_dm_read_marker(make_user, open_tab):
    ann, bob = make_user("ann"), make_user("bob")
    ann1 = open_tab(ann)
    sent = [ann1.ok("dm", {"to_user": "bob", "body": f"m{n}", "client_id": f"d{n}"})["message"] for n in range(3)]
    bob1 = open_tab(bob)
    assert bob1.session["dms"][0]["unread"] == 3

    answer = bob1.ok("read", {"user": "ann", "id": sent[1]["id"]})

    assert answer == {"ok": True, "user": "ann", "last_read_id": sent[1]["id"]}
    assert open_tab(bob).session["dms"][0]["unread"] == 1
    assert bob1.ok("read", {"user": "ANN", "id": sent[0]["id"]})["last_read_id"] == sent[1]["id"]
    assert bob1.refused("read", {"user": "nobody", "id": sent[0]["id"]}) == "not_found"
    assert bob1.refused("read", {"user": "ann", "room": "general", "id": sent[0]["id"]}) == "invalid"
    assert bob1.refused("read", {"user": "ann", "id": "1"}) == "invalid"


# -- sync after a rev ----------------------------------------------------------------------


def test_sync_after_rev_answers_every_change_in_rev_order(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    first = say(ann1, "one")
    second = say(bob1, "two")
    dm = ann1.ok("dm", {"to_user": "bob", "body": "three", "client_id": "d1"})["message"]
    edited = ann1.ok("edit", {"id": first["id"], "body": "one again"})["message"]
    reacted = ann1.ok("react", {"id": second["id"], "emoji": "👍", "active": True})["message"]

    answer = bob1.ok("sync", {"after_rev": first["rev"]})

    assert set(answer) == {"ok", "messages", "has_more", "rev"}
    assert answer["messages"] == [dm, edited, reacted]
    assert (answer["has_more"], answer["rev"]) == (False, reacted["rev"])
    assert cat1.ok("sync", {"after_rev": first["rev"]})["messages"] == [edited, reacted]
    assert bob1.ok("sync", {"after_rev": reacted["rev"]}) == {
        "ok": True,
        "messages": [],
        "has_more": False,
        "rev": reacted["rev"],
    }
    assert bob1.refused("sync", {"after_rev": -1}) == "invalid"
    assert bob1.refused("sync", {"after_rev": "0"}) == "invalid"
    # The older form still answers by id.
    assert [m["id"] for m in bob1.ok("sync", {"after": 0})["messages"]] == [first["id"], second["id"], dm["id"]]


# -- private rooms, the directory, invitations, topics --------------------------------------


def test_join_private_creates_a_room_and_the_users_other_sockets_get_room_joined(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    forget(ann1, ann2, bob1, cat1)

    answer = ann1.ok("join", {"room": "secret", "private": True, "topic": "plans"})

    room = {"name": "secret", "members": 1, "online": 1, "topic": "plans", "private": True}
    assert answer == {"ok": True, "room": room, "messages": []}
    assert ann2.got("room_joined") == [{"room": room}]
    assert ann1.got("room_joined") == []
    assert bob1.got("room_joined") == []

    assert bob1.refused("join", {"room": "secret"}) == "forbidden"
    assert bob1.refused("history", {"room": "secret"}) == "forbidden"
    assert bob1.refused("who", {"room": "secret"}) == "forbidden"
    assert bob1.refused("message", {"room": "secret", "body": "let me in", "client_id": "x"}) == "forbidden"
    secret = say(ann2, "hush", room="secret")
    assert ann1.got("message") == [secret]
    assert bob1.got("message") == []
    assert ann2.ok("history", {"room": "secret"})["messages"] == [secret]


def test_join_public_reaches_the_other_sockets_too(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    forget(ann1, ann2, bob1, cat1)
    answer = ann2.ok("join", {"room": "dev"})
    assert answer["room"]["private"] is False
    assert ann1.got("room_joined") == [{"room": answer["room"]}]
    assert ann2.got("room_joined") == []
    ann2.ok("join", {"room": "dev"})
    assert ann1.got("room_joined") == []


def test_rooms_lists_public_rooms_and_own_private_ones_filtered_by_q(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    ann1.ok("join", {"room": "secret", "private": True})
    ann1.ok("join", {"room": "dev"})
    bob1.ok("join", {"room": "bobs-den", "private": True})

    listed = ann1.ok("rooms", {})["rooms"]
    assert [room["name"] for room in listed] == ["dev", "general", "secret"]
    assert listed[0] == {"name": "dev", "members": 1, "online": 1, "topic": "", "private": False}
    assert [room["name"] for room in bob1.ok("rooms", {"q": "E"})["rooms"]] == ["bobs-den", "dev", "general"]
    assert [room["name"] for room in bob1.ok("rooms", {"q": "secret"})["rooms"]] == []
    assert [room["name"] for room in ann1.ok("rooms", {"q": "sec"})["rooms"]] == ["secret"]
    assert bob1.refused("rooms", {"q": 5}) == "invalid"


def test_invite_makes_every_socket_of_the_invited_user_join(people, open_tab):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    bob2 = open_tab(bob)
    ann1.ok("join", {"room": "secret", "private": True})
    forget(ann1, ann2, bob1, bob2, cat1)

    answer = ann1.ok("invite", {"room": "secret", "user": "bob"})

    room = {"name": "secret", "members": 2, "online": 2, "topic": "", "private": True}
    assert answer == {"ok": True, "room": room}
    assert bob1.got("room_joined") == [{"room": room}]
    assert bob2.got("room_joined") == [{"room": room}]
    assert ann1.got("room_joined") == [] and cat1.got("room_joined") == []
    posted = say(ann1, "welcome", room="secret")
    assert bob1.got("message") == [posted] and bob2.got("message") == [posted]
    assert [room["name"] for room in bob1.ok("rooms", {})["rooms"]] == ["general", "secret"]

    assert cat1.refused("invite", {"room": "secret", "user": "cat"}) == "forbidden"
    assert bob1.refused("invite", {"room": "secret", "user": "nobody"}) == "not_found"
    assert bob1.refused("invite", {"room": "secret"}) == "invalid"
    # Invited, bob may invite too.
    bob1.ok("invite", {"room": "secret", "user": "cat"})
    assert cat1.got("room_joined")[0]["room"]["name"] == "secret"


def test_topic_is_for_members_and_the_room_gets_room_updated(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    ann1.ok("join", {"room": "dev"})
    bob1.ok("join", {"room": "dev"})
    forget(ann1, ann2, bob1, cat1)

    answer = bob1.ok("topic", {"room": "dev", "topic": "ship it"})

    assert answer["room"]["topic"] == "ship it"
    for tab in (ann1, ann2, bob1):
        assert tab.got("room_updated") == [{"room": answer["room"]}]
    assert cat1.got("room_updated") == []
    assert cat1.refused("topic", {"room": "dev", "topic": "mine"}) == "forbidden"
    assert bob1.refused("topic", {"room": "dev", "topic": "t" * 251}) == "too_large"
    assert bob1.refused("topic", {"room": "dev"}) == "invalid"
    assert cat1.ok("rooms", {"q": "dev"})["rooms"][0]["topic"] == "ship it"


# -- the HTTP API hides private rooms ---------------------------------------------------------


def test_the_api_hides_private_rooms_from_non_members(app, people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    ann1.ok("join", {"room": "secret", "private": True})
    say(ann1, "hush", room="secret")
    client = app.test_client()

    def token(user) -> dict:
        answer = client.post("/api/token", json={"username": user.username, "password": user.password})
        assert answer.status_code == 200
        return {"Authorization": f"Bearer {answer.get_json()['token']}"}

    as_ann, as_bob = token(ann), token(bob)
    assert [r["name"] for r in client.get("/api/rooms", headers=as_ann).get_json()["rooms"]] == ["general", "secret"]
    assert [r["name"] for r in client.get("/api/rooms", headers=as_bob).get_json()["rooms"]] == ["general"]
    refused = client.get("/api/rooms/secret/messages", headers=as_bob)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    allowed = client.get("/api/rooms/secret/messages", headers=as_ann)
    assert allowed.status_code == 200
    assert [m["body"] for m in allowed.get_json()["messages"]] == ["hush"]


# -- limits ---------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock(app):
    """Freeze the rate limiter's clock, so "within the window" holds however slow the machine is."""
    limiter = socketio.server.namespace_handlers["/"].limiter
    now = [1000.0]
    limiter._clock = lambda: now[0]
    return now


@pytest.mark.parametrize("limits", [{"RATE_LIMIT_COUNT": 4}])
def test_edit_delete_and_react_count_against_the_send_limit(people, frozen_clock):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    posted = say(ann1, "one")  # 1
    ann1.ok("edit", {"id": posted["id"], "body": "one!"})  # 2
    ann2.ok("react", {"id": posted["id"], "emoji": "👍", "active": True})  # 3
    assert ann1.refused("edit", {"id": posted["id"], "body": ""}) == "invalid"  # 4: refused ones count too
    assert ann2.refused("delete", {"id": posted["id"]}) == "rate_limited"
    assert ann1.refused("react", {"id": posted["id"], "emoji": "🎉", "active": True}) == "rate_limited"
    assert ann1.refused("edit", {"id": posted["id"], "body": "two"}) == "rate_limited"
    assert bob1.ok("react", {"id": posted["id"], "emoji": "🎉", "active": True})["message"]["body"] == "one!"
    frozen_clock[0] += 11
    assert ann2.ok("delete", {"id": posted["id"]})["message"]["deleted"] is True


@pytest.mark.parametrize("limits", [{"ROOM_CREATE_LIMIT": 1}])
def test_the_room_allowance_stops_creating_rooms_but_not_joining_them(people):
    ann, bob, cat, ann1, ann2, bob1, cat1 = people
    ann1.ok("join", {"room": "first"})
    assert ann1.refused("join", {"room": "second"}) == "rate_limited"
    assert ann1.refused("join", {"room": "third", "private": True}) == "rate_limited"
    bob1.ok("join", {"room": "bobs"})
    assert ann1.ok("join", {"room": "bobs"})["room"]["members"] == 2
    assert [room["name"] for room in ann1.ok("rooms", {})["rooms"]] == ["bobs", "first", "general"]


# -- moderation -------------------------------------------------------------------------------


def test_an_admin_delete_sends_message_updated_to_the_room(make_user, open_tab, socket_client):
    ann, bob = make_user("ann"), make_user("bob")
    boss = make_user("boss", admin=True)
    ann1, bob1 = open_tab(ann), open_tab(bob)
    admin = socket_client(boss, ADMIN)
    posted = say(ann1, "@bob spam")
    bob1.ok("react", {"id": posted["id"], "emoji": "👎", "active": True})
    forget(ann1, bob1)

    answer = admin.emit("delete_message", {"id": posted["id"]}, namespace=ADMIN, callback=True)

    assert answer["ok"] is True
    deleted = answer["message"]
    assert (deleted["deleted"], deleted["body"], deleted["mentions"], deleted["reactions"]) == (True, "", [], [])
    for tab in (ann1, bob1):
        assert tab.got("message_updated") == [deleted]
        assert tab.got("message_deleted") == [{"id": posted["id"], "room": "general"}]
    assert bob1.ok("sync", {"after_rev": posted["rev"]})["messages"] == [deleted]


def test_admin_stats_lists_private_rooms_too(make_user, open_tab, socket_client):
    ann = make_user("ann")
    boss = make_user("boss", admin=True)
    open_tab(ann).ok("join", {"room": "secret", "private": True})
    admin = socket_client(boss, ADMIN)
    stats = admin.emit("stats", {}, namespace=ADMIN, callback=True)["stats"]
    assert [(room["name"], room["private"]) for room in stats["rooms"]] == [("general", False), ("secret", True)]
