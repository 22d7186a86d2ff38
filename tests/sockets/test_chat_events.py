"""Every client event of the `/` namespace through the Flask-SocketIO test client."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from app.extensions import db, socketio
from app.models import Message, utcnow
from app.services import messages, rooms, users
from tests.support.moderation import mute, unmute


def received(sio, name: str) -> list:
    """Payloads of every ``name`` event the test client got since the last call (others are dropped)."""
    payloads = []
    for event in sio.get_received():
        if event["name"] != name:
            continue
        # The test client unwraps the single argument of "message" events only.
        payloads.append(event["args"] if name == "message" else event["args"][0])
    return payloads


@dataclass
class Tab:
    """One signed-in socket: a browser tab."""

    sio: object
    sid: str
    user: object

    def send(self, event: str, payload=None) -> dict:
        return self.sio.emit(event, payload, callback=True)

    def got(self, name: str) -> list:
        return received(self.sio, name)


@pytest.fixture
def open_tab(socket_client):
    def open_(user) -> Tab:
        sio = socket_client(user)
        [session] = received(sio, "session")
        return Tab(sio, session["sid"], user)

    return open_


def drain(*tabs: Tab) -> None:
    for tab in tabs:
        tab.sio.get_received()


def stored_ids(app) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Message.id).order_by(Message.id)))


def chat_namespace():
    return socketio.server.namespace_handlers["/"]


@pytest.fixture
def frozen_clock():
    """Freeze the rate limiter's clock, so "within 10 seconds" holds however slow the machine is."""
    limiter = chat_namespace().limiter
    now = [1000.0]
    limiter._clock = lambda: now[0]
    return now


# -- join and leave ---------------------------------------------------------


def test_join_creates_the_room_and_answers_room_and_messages(open_tab, make_user):
    tab = open_tab(make_user("ann"))
    ack = tab.send("join", {"room": "random"})
    assert ack == {
        "ok": True,
        "room": {"name": "random", "members": 1, "online": 1, "topic": "", "private": False},
        "messages": [],
    }


def test_join_answers_the_last_50_messages_oldest_first(app, open_tab, make_user):
    ann = make_user("ann")
    with app.app_context():
        writer = users.find_user("ann")
        general = rooms.find_room("general")
        rows = [Message(sender_id=writer.id, room_id=general.id, body=f"m{i}", created_at=utcnow()) for i in range(55)]
        for row in rows:
            row.rev = messages.next_rev(db.session)
            db.session.add(row)
            db.session.flush()
        db.session.commit()
        posted = [row.id for row in rows]
    tab = open_tab(make_user("bob"))
    ack = tab.send("join", {"room": "general"})
    assert ack["ok"] is True
    assert [m["id"] for m in ack["messages"]] == posted[-50:]
    assert ack["room"] == {"name": "general", "members": 2, "online": 1, "topic": "", "private": False}
    assert ann.username == ack["messages"][0]["sender"]["username"]


def test_join_and_leave_apply_to_every_socket_of_the_user(open_tab, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    tab1, tab2 = open_tab(ann), open_tab(ann)
    bob_tab = open_tab(bob)
    assert bob_tab.send("join", {"room": "random"})["ok"] is True
    assert tab1.send("join", {"room": "random"})["ok"] is True
    drain(tab1, tab2, bob_tab)

    posted = bob_tab.send("message", {"room": "random", "body": "one", "client_id": "b1"})["message"]
    assert tab1.got("message") == [posted]
    assert tab2.got("message") == [posted]

    assert tab2.send("leave", {"room": "random"}) == {"ok": True}
    bob_tab.send("message", {"room": "random", "body": "two", "client_id": "b2"})
    assert tab1.got("message") == []
    assert tab2.got("message") == []
    assert tab1.send("message", {"room": "random", "body": "x", "client_id": "a1"})["error"]["code"] == "forbidden"


def test_a_new_socket_after_joining_is_in_the_room(open_tab, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    first = open_tab(ann)
    first.send("join", {"room": "random"})
    later = open_tab(ann)
    bob_tab = open_tab(bob)
    bob_tab.send("join", {"room": "random"})
    drain(later)
    posted = bob_tab.send("message", {"room": "random", "body": "hi", "client_id": "b1"})["message"]
    assert later.got("message") == [posted]


def test_leave_general_is_forbidden_and_unknown_rooms_are_not_found(open_tab, make_user):
    tab = open_tab(make_user("ann"))
    assert tab.send("leave", {"room": "general"})["error"]["code"] == "forbidden"
    assert tab.send("leave", {"room": "nowhere"})["error"]["code"] == "not_found"
    drain(tab)
    other = open_tab(make_user("bob"))
    posted = other.send("message", {"room": "general", "body": "still here", "client_id": "c"})["message"]
    assert tab.got("message") == [posted]


# -- room messages ------------------------------------------------------------


def test_message_ack_carries_the_committed_message(app, open_tab, make_user):
    ann = make_user("ann")
    tab = open_tab(ann)
    ack = tab.send("message", {"room": "general", "body": "  hello  ", "client_id": "c-1"})
    assert ack["ok"] is True
    message = ack["message"]
    assert message["body"] == "hello"
    assert message["room"] == "general"
    assert message["recipient"] is None
    assert message["sender"] == ann.to_dict()
    assert message["client_id"] == "c-1"
    assert message["deleted"] is False
    assert stored_ids(app) == [message["id"]]


def test_message_goes_to_the_rooms_other_sockets_but_not_the_sender(open_tab, make_user):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    sender, sender_tab2 = open_tab(ann), open_tab(ann)
    bob_tab = open_tab(bob)
    cat_tab = open_tab(cat)
    for tab in (sender, bob_tab):
        assert tab.send("join", {"room": "random"})["ok"] is True
    drain(sender, sender_tab2, bob_tab, cat_tab)

    ack = sender.send("message", {"room": "random", "body": "hi", "client_id": "c1"})
    assert bob_tab.got("message") == [ack["message"]]
    assert sender_tab2.got("message") == [ack["message"]]
    assert sender.got("message") == []
    assert cat_tab.got("message") == []


def test_repeated_client_id_returns_the_same_message_and_broadcasts_once(app, open_tab, make_user):
    sender, listener = open_tab(make_user("ann")), open_tab(make_user("bob"))
    drain(sender, listener)
    first = sender.send("message", {"room": "general", "body": "once", "client_id": "same"})
    again = sender.send("message", {"room": "general", "body": "changed", "client_id": "same"})
    assert again == first
    assert listener.got("message") == [first["message"]]
    assert stored_ids(app) == [first["message"]["id"]]


def test_message_to_a_room_one_is_not_in_is_forbidden(app, open_tab, make_user):
    owner, outsider = open_tab(make_user("ann")), open_tab(make_user("bob"))
    owner.send("join", {"room": "random"})
    drain(owner)
    ack = outsider.send("message", {"room": "random", "body": "let me in", "client_id": "c"})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "forbidden"
    assert ack["error"]["message"]
    assert owner.got("message") == []
    assert stored_ids(app) == []


def test_message_to_an_unknown_room_is_not_found(open_tab, make_user):
    tab = open_tab(make_user("ann"))
    assert tab.send("message", {"room": "nowhere", "body": "hi", "client_id": "c"})["error"]["code"] == "not_found"


def test_muted_user_gets_muted(app, open_tab, make_user):
    tab = open_tab(make_user("ann"))
    with app.app_context():
        mute("ann", 60)
    assert tab.send("message", {"room": "general", "body": "hi", "client_id": "c"})["error"]["code"] == "muted"
    assert tab.send("dm", {"to_user": "ann", "body": "hi", "client_id": "d"})["error"]["code"] == "muted"
    assert stored_ids(app) == []


# -- direct messages ------------------------------------------------------------


def test_dm_to_sid_reaches_exactly_that_socket_and_the_senders_other_sockets(app, open_tab, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    sender, sender_tab2 = open_tab(ann), open_tab(ann)
    target, target_other_tab = open_tab(bob), open_tab(bob)
    drain(sender, sender_tab2, target, target_other_tab)

    ack = sender.send("dm", {"to_sid": target.sid, "body": " psst ", "client_id": "d1"})
    assert ack["ok"] is True
    message = ack["message"]
    assert (message["room"], message["recipient"], message["body"]) == (None, bob.to_dict(), "psst")
    assert target.got("dm") == [message]
    assert sender_tab2.got("dm") == [message]
    assert target_other_tab.got("dm") == []
    assert sender.got("dm") == []
    assert stored_ids(app) == [message["id"]]


def test_dm_to_user_reaches_every_socket_of_the_recipient(open_tab, make_user):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    sender, sender_tab2 = open_tab(ann), open_tab(ann)
    bob1, bob2 = open_tab(bob), open_tab(bob)
    bystander = open_tab(cat)
    drain(sender, sender_tab2, bob1, bob2, bystander)

    ack = sender.send("dm", {"to_user": "BOB", "body": "hi", "client_id": "d1"})
    assert ack["ok"] is True
    assert bob1.got("dm") == [ack["message"]]
    assert bob2.got("dm") == [ack["message"]]
    assert sender_tab2.got("dm") == [ack["message"]]
    assert sender.got("dm") == []
    assert bystander.got("dm") == []


def test_dm_to_an_offline_user_is_stored_for_later(app, open_tab, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    sender = open_tab(ann)
    ack = sender.send("dm", {"to_user": "bob", "body": "when you are back", "client_id": "d1"})
    assert ack["ok"] is True
    bob_tab = open_tab(bob)
    history = bob_tab.send("dm_history", {"user": "ann"})
    assert history == {"ok": True, "messages": [ack["message"]], "has_more": False}
    assert bob_tab.send("sync", {"after": 0})["messages"] == [ack["message"]]


def test_repeated_dm_client_id_is_not_delivered_twice(app, open_tab, make_user):
    sender, target = open_tab(make_user("ann")), open_tab(make_user("bob"))
    drain(target)
    first = sender.send("dm", {"to_user": "bob", "body": "once", "client_id": "same"})
    again = sender.send("dm", {"to_sid": target.sid, "body": "twice?", "client_id": "same"})
    assert again == first
    assert target.got("dm") == [first["message"]]
    assert len(stored_ids(app)) == 1


def test_dm_retry_after_the_target_socket_left_returns_the_stored_dm(app, open_tab, make_user):
    sender, target = open_tab(make_user("ann")), open_tab(make_user("bob"))
    first = sender.send("dm", {"to_sid": target.sid, "body": "hello", "client_id": "retry-me"})
    target.sio.disconnect()
    again = sender.send("dm", {"to_sid": target.sid, "body": "hello", "client_id": "retry-me"})
    assert again == first
    assert len(stored_ids(app)) == 1


def test_message_retry_after_leaving_the_room_returns_the_stored_message(app, open_tab, make_user):
    tab = open_tab(make_user("ann"))
    tab.send("join", {"room": "random"})
    first = tab.send("message", {"room": "random", "body": "hello", "client_id": "retry-me"})
    tab.send("leave", {"room": "random"})
    assert tab.send("message", {"room": "random", "body": "hello", "client_id": "retry-me"}) == first
    assert len(stored_ids(app)) == 1


def test_dm_to_ones_own_sid_reaches_only_the_other_tabs(open_tab, make_user):
    ann = make_user("ann")
    tab1, tab2 = open_tab(ann), open_tab(ann)
    drain(tab1, tab2)
    ack = tab1.send("dm", {"to_sid": tab1.sid, "body": "note to self", "client_id": "n"})
    assert ack["ok"] is True
    assert tab1.got("dm") == []
    assert tab2.got("dm") == [ack["message"]]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"to_sid": "no-such-sid", "body": "hi", "client_id": "c"}, "not_found"),
        ({"to_user": "nobody", "body": "hi", "client_id": "c"}, "not_found"),
        ({"body": "hi", "client_id": "c"}, "invalid"),
        ({"to_sid": "SID", "to_user": "bob", "body": "hi", "client_id": "c"}, "invalid"),
        ({"to_user": "bob", "body": "", "client_id": "c"}, "invalid"),
        ({"to_user": "bob", "body": "x" * 4001, "client_id": "c"}, "too_large"),
        ({"to_user": "bob", "body": "hi", "client_id": "c" * 65}, "too_large"),
    ],
)
def test_bad_dm_addresses_store_nothing(app, open_tab, make_user, payload, code):
    sender, target = open_tab(make_user("ann")), open_tab(make_user("bob"))
    payload = {key: target.sid if value == "SID" else value for key, value in payload.items()}
    drain(target)
    ack = sender.send("dm", payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert target.got("dm") == []
    assert stored_ids(app) == []


# -- reading ------------------------------------------------------------------


def test_history_pages_backwards(open_tab, make_user):
    tab = open_tab(make_user("ann"))
    posted = [
        tab.send("message", {"room": "general", "body": f"m{i}", "client_id": f"c{i}"})["message"] for i in range(5)
    ]
    page = tab.send("history", {"room": "general", "limit": 2})
    assert page == {"ok": True, "messages": posted[3:], "has_more": True}
    page = tab.send("history", {"room": "general", "before": posted[3]["id"], "limit": 2})
    assert page == {"ok": True, "messages": posted[1:3], "has_more": True}
    page = tab.send("history", {"room": "general", "before": posted[1]["id"]})
    assert page == {"ok": True, "messages": posted[:1], "has_more": False}


def test_history_of_a_room_one_is_not_in_is_readable(open_tab, make_user):
    owner, reader = open_tab(make_user("ann")), open_tab(make_user("bob"))
    owner.send("join", {"room": "random"})
    posted = owner.send("message", {"room": "random", "body": "public", "client_id": "c"})["message"]
    assert reader.send("history", {"room": "random"}) == {"ok": True, "messages": [posted], "has_more": False}
    assert reader.send("history", {"room": "nowhere"})["error"]["code"] == "not_found"


def test_dm_history_shows_both_directions(open_tab, make_user):
    ann_tab, bob_tab = open_tab(make_user("ann")), open_tab(make_user("bob"))
    one = ann_tab.send("dm", {"to_user": "bob", "body": "1", "client_id": "a"})["message"]
    two = bob_tab.send("dm", {"to_user": "ann", "body": "2", "client_id": "b"})["message"]
    assert ann_tab.send("dm_history", {"user": "bob"}) == {"ok": True, "messages": [one, two], "has_more": False}
    assert bob_tab.send("dm_history", {"user": "ann", "limit": 1}) == {"ok": True, "messages": [two], "has_more": True}
    page = bob_tab.send("dm_history", {"user": "ann", "before": two["id"]})
    assert page == {"ok": True, "messages": [one], "has_more": False}
    assert bob_tab.send("dm_history", {"user": "nobody"})["error"]["code"] == "not_found"


def test_sync_returns_everything_after_an_id_in_the_users_rooms_and_dms(app, open_tab, make_user):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    ann_tab, bob_tab, cat_tab = open_tab(ann), open_tab(bob), open_tab(cat)
    cat_tab.send("join", {"room": "cats-only"})
    first = bob_tab.send("message", {"room": "general", "body": "first", "client_id": "1"})["message"]
    cat_tab.send("message", {"room": "cats-only", "body": "not for ann", "client_id": "2"})
    to_ann = bob_tab.send("dm", {"to_user": "ann", "body": "for ann", "client_id": "3"})["message"]
    bob_tab.send("dm", {"to_user": "cat", "body": "for cat", "client_id": "4"})
    from_ann = ann_tab.send("dm", {"to_user": "cat", "body": "from ann", "client_id": "5"})["message"]

    assert ann_tab.send("sync", {"after": 0}) == {"ok": True, "messages": [first, to_ann, from_ann], "has_more": False}
    assert ann_tab.send("sync", {"after": to_ann["id"]}) == {"ok": True, "messages": [from_ann], "has_more": False}
    assert ann_tab.send("sync", {"after": from_ann["id"]}) == {"ok": True, "messages": [], "has_more": False}


def test_who_lists_online_users_with_their_sids(open_tab, make_user):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    ann1, ann2 = open_tab(ann), open_tab(ann)
    bob_tab = open_tab(bob)
    make_user("dan")  # offline: never listed
    bob_tab.send("join", {"room": "random"})
    cat_tab = open_tab(cat)

    everyone = cat_tab.send("who", {})
    assert everyone == {
        "ok": True,
        "users": [
            {"user": ann.to_dict(), "sids": sorted([ann1.sid, ann2.sid])},
            {"user": bob.to_dict(), "sids": [bob_tab.sid]},
            {"user": cat.to_dict(), "sids": [cat_tab.sid]},
        ],
    }
    assert cat_tab.send("who") == everyone
    in_random = cat_tab.send("who", {"room": "random"})
    assert in_random == {"ok": True, "users": [{"user": bob.to_dict(), "sids": [bob_tab.sid]}]}

    ann2.sio.disconnect()
    after = cat_tab.send("who", {"room": "general"})
    assert after["users"][0] == {"user": ann.to_dict(), "sids": [ann1.sid]}
    assert cat_tab.send("who", {"room": "nowhere"})["error"]["code"] == "not_found"


def test_typing_goes_to_the_rooms_other_sockets(open_tab, make_user):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    typist, typist_tab2 = open_tab(ann), open_tab(ann)
    bob_tab, cat_tab = open_tab(bob), open_tab(cat)
    typist.send("join", {"room": "random"})
    bob_tab.send("join", {"room": "random"})
    drain(typist, typist_tab2, bob_tab, cat_tab)

    assert typist.send("typing", {"room": "random", "active": True}) == {"ok": True}
    expected = {"room": "random", "user": ann.to_dict(), "active": True}
    assert bob_tab.got("typing") == [expected]
    assert typist_tab2.got("typing") == [expected]
    assert typist.got("typing") == []
    assert cat_tab.got("typing") == []

    # No ack asked for: the event still goes out.
    typist.sio.emit("typing", {"room": "random", "active": False})
    assert bob_tab.got("typing") == [{**expected, "active": False}]


def test_typing_in_a_room_one_is_not_in_is_forbidden(open_tab, make_user):
    member, outsider = open_tab(make_user("ann")), open_tab(make_user("bob"))
    member.send("join", {"room": "random"})
    drain(member)
    assert outsider.send("typing", {"room": "random", "active": True})["error"]["code"] == "forbidden"
    assert outsider.send("typing", {"room": "random", "active": "yes"})["error"]["code"] == "invalid"
    assert member.got("typing") == []


# -- rate limits ---------------------------------------------------------------


def test_the_21st_message_in_10_seconds_is_rate_limited(app, open_tab, make_user, frozen_clock):
    tab = open_tab(make_user("ann"))
    acks = [tab.send("message", {"room": "general", "body": f"m{i}", "client_id": f"c{i}"}) for i in range(21)]
    assert all(ack["ok"] for ack in acks[:20])
    assert acks[20]["error"]["code"] == "rate_limited"
    assert len(stored_ids(app)) == 20
    frozen_clock[0] += 10.5
    assert tab.send("message", {"room": "general", "body": "later", "client_id": "later"})["ok"] is True


def test_messages_and_dms_share_one_limit_and_refusals_count(app, open_tab, make_user, frozen_clock):
    make_user("bob")
    tab = open_tab(make_user("ann"))
    refused = [tab.send("message", {"room": "general", "body": "  ", "client_id": f"e{i}"}) for i in range(5)]
    assert {ack["error"]["code"] for ack in refused} == {"invalid"}
    garbage = [tab.send("dm", "not an object") for _ in range(2)]
    assert {ack["error"]["code"] for ack in garbage} == {"invalid"}
    sent = [tab.send("message", {"room": "general", "body": "m", "client_id": f"m{i}"}) for i in range(6)]
    sent += [tab.send("dm", {"to_user": "bob", "body": "d", "client_id": f"d{i}"}) for i in range(7)]
    assert all(ack["ok"] for ack in sent)
    assert (
        tab.send("dm", {"to_user": "bob", "body": "one too many", "client_id": "x"})["error"]["code"] == "rate_limited"
    )
    assert len(stored_ids(app)) == 13


def test_the_limit_is_per_user_across_sockets(open_tab, make_user, frozen_clock):
    ann = make_user("ann")
    tab1, tab2 = open_tab(ann), open_tab(ann)
    other = open_tab(make_user("bob"))
    for i in range(10):
        assert tab1.send("message", {"room": "general", "body": "a", "client_id": f"a{i}"})["ok"]
        assert tab2.send("message", {"room": "general", "body": "b", "client_id": f"b{i}"})["ok"]
    assert tab2.send("message", {"room": "general", "body": "c", "client_id": "c"})["error"]["code"] == "rate_limited"
    assert other.send("message", {"room": "general", "body": "bob", "client_id": "bob"})["ok"] is True


def test_muted_is_answered_before_rate_limited(app, open_tab, make_user, frozen_clock):
    tab = open_tab(make_user("ann"))
    with app.app_context():
        mute("ann", 60)
    codes = {
        tab.send("message", {"room": "general", "body": "m", "client_id": f"c{i}"})["error"]["code"] for i in range(25)
    }
    assert codes == {"muted"}
    with app.app_context():
        unmute("ann")
    # The muted attempts counted: the window is still full.
    assert (
        tab.send("message", {"room": "general", "body": "m", "client_id": "after"})["error"]["code"] == "rate_limited"
    )


def test_join_reaches_rooms_the_service_created(app, open_tab, make_user):
    ann = make_user("ann")
    with app.app_context():
        rooms.join_room(ann.id, "made-elsewhere")
    tab = open_tab(ann)
    ack = tab.send("join", {"room": "made-elsewhere"})
    assert ack["room"]["members"] == 1
