"""Conversations through the service actions: edits, deletions, reactions, replies, mentions, revs and
sync after a rev, DM lists and read markers, private rooms, invitations and topics.

Every action publishes through a ``RecordingNotifier``, so each test asserts both what was stored
and what was told to whom.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
import sqlalchemy as sa

from app.database import MESSAGE_LOCK_KEY
from app.errors import ServiceError
from app.extensions import db
from app.models import AuditEntry, Mention, Message, Reaction, Room, User, utcnow
from app.services import messages, moderation, rooms, users
from app.services.hot_cache import hot_cache
from app.services.notifier import EXTENSION_KEY, Published, RecordingNotifier
from tests.services.test_ordering import WAIT_SECONDS, libpq, wait_for_lock_waiter
from tests.support import moderation as moderate

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

SID = "acting-sid"


@pytest.fixture
def recorder(app, ctx) -> RecordingNotifier:
    recording = RecordingNotifier()
    app.extensions[EXTENSION_KEY] = recording
    return recording


def register(name: str):
    return users.register_user(name, "password1")


@pytest.fixture
def ann(recorder):
    return register("ann")


@pytest.fixture
def bob(recorder):
    return register("bob")


@pytest.fixture
def cat(recorder):
    return register("cat")


@pytest.fixture
def admin(recorder):
    register("boss")
    return users.set_admin("boss", True)


def post(user, body, room="general", **options) -> dict:
    return messages.post_room_message(user, room, body, **options).message


def dm(user, to, body, **options) -> dict:
    return messages.post_direct_message(user, to, body, **options).message


def refused(code: str, action, *args, **kwargs) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        action(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    db.session.rollback()
    return caught.value


def stored(message_id: int) -> dict:
    db.session.expire_all()
    return db.session.get(Message, message_id).to_dict()


def current_rev() -> int:
    return db.session.scalar(sa.select(sa.func.max(Message.rev))) or 0


def told(recorder: RecordingNotifier, event: str | None = None) -> list[tuple]:
    """What was published (method, target, event, skip_sid), in order, and forget it."""
    published = [(p.method, p.target, p.event, p.skip_sid) for p in recorder.events(event)]
    recorder.clear()
    return published


def payloads(recorder: RecordingNotifier, event: str) -> list[dict | None]:
    return [p.data for p in recorder.events(event)]


def joined(user, name: str, **options) -> Room:
    room, _ = rooms.join_room(user.id, name, **options)
    return room


# -- edit ----------------------------------------------------------------------------------


def test_edit_replaces_the_body_sets_edited_at_takes_a_new_rev_and_tells_the_room(recorder, ann, bob):
    original = post(ann, "first draft")
    post(bob, "someone else")
    recorder.clear()

    edited = messages.edit_message(ann, original["id"], "  second draft  ", actor_sid=SID)

    assert edited["body"] == "second draft"
    assert edited["edited_at"] is not None and edited["edited_at"].endswith("Z")
    assert edited["rev"] == current_rev() > original["rev"]
    assert {k: v for k, v in edited.items() if k not in ("body", "edited_at", "rev")} == {
        k: v for k, v in original.items() if k not in ("body", "edited_at", "rev")
    }
    assert stored(original["id"]) == edited
    assert told(recorder) == [("to_room", "general", "message_updated", SID)]


def test_editing_a_direct_message_tells_both_parties_but_the_acting_socket(recorder, ann, bob):
    message = dm(ann, bob, "hi bob")
    recorder.clear()
    edited = messages.edit_message(ann, message["id"], "hello bob", actor_sid=SID)
    assert edited["recipient"]["username"] == "bob"
    assert told(recorder) == [("to_users", sorted([ann.id, bob.id]), "message_updated", SID)]


def test_edit_with_the_same_body_changes_nothing_and_tells_no_one(recorder, ann):
    message = post(ann, "unchanged")
    recorder.clear()
    again = messages.edit_message(ann, message["id"], "  unchanged ", actor_sid=SID)
    assert again == message
    assert stored(message["id"])["edited_at"] is None
    assert current_rev() == message["rev"]
    assert recorder.published == []


def test_only_the_sender_may_edit_a_message_others_can_see(recorder, ann, bob):
    message = post(ann, "mine")
    recorder.clear()
    refused("forbidden", messages.edit_message, bob, message["id"], "yours now")
    assert stored(message["id"]) == message
    assert recorder.published == []


def test_edit_of_a_message_one_may_not_see_is_not_found(recorder, ann, bob, cat):
    joined(ann, "secret", private=True)
    secret = post(ann, "members only", room="secret")
    between = dm(ann, bob, "just us")
    gone = post(cat, "soon gone")
    messages.delete_message(cat, gone["id"])
    recorder.clear()
    rev = current_rev()

    for user, message_id in [
        (bob, secret["id"]),  # a private room bob is not in
        (cat, between["id"]),  # another pair's DM
        (cat, gone["id"]),  # deleted
        (ann, gone["id"] + 1000),  # unknown
    ]:
        error = refused("not_found", messages.edit_message, user, message_id, "changed")
        assert str(message_id) in error.message
    assert current_rev() == rev
    assert recorder.published == []


def test_edit_follows_the_body_rules_and_changes_nothing_when_refused(recorder, ann):
    message = post(ann, "keep me")
    recorder.clear()
    for body, code in [
        ("", "invalid"),
        ("  \n ", "invalid"),
        (None, "invalid"),
        (7, "invalid"),
        ("x" * 4001, "too_large"),
    ]:
        refused(code, messages.edit_message, ann, message["id"], body)
    for message_id in [None, "1", 0, -1, 1.5, True, 2**31]:
        refused("invalid", messages.edit_message, ann, message_id, "body")
    assert stored(message["id"]) == message
    assert recorder.published == []


def test_a_body_of_4000_characters_may_be_edited_in(recorder, ann):
    message = post(ann, "short")
    assert messages.edit_message(ann, message["id"], "y" * 4000)["body"] == "y" * 4000


def test_a_muted_user_may_not_edit_or_react_but_may_delete(recorder, ann, bob):
    message = post(ann, "before the mute")
    moderate.mute("ann")
    muted = users.find_user("ann")
    recorder.clear()
    refused("muted", messages.edit_message, muted, message["id"], "during the mute")
    refused("muted", messages.react, muted, message["id"], "👍", True)
    assert stored(message["id"]) == message
    assert recorder.published == []
    assert messages.delete_message(muted, message["id"])["deleted"] is True


# -- delete --------------------------------------------------------------------------------


def test_delete_empties_the_message_and_tells_the_room_updated_and_deleted(recorder, ann, bob):
    message = post(ann, "hello @bob")
    messages.react(bob, message["id"], "👍", True)
    recorder.clear()

    deleted = messages.delete_message(ann, message["id"], actor_sid=SID)

    assert deleted["deleted"] is True
    assert (deleted["body"], deleted["reactions"], deleted["mentions"], deleted["attachments"]) == ("", [], [], [])
    assert deleted["rev"] == current_rev()
    assert stored(message["id"]) == deleted
    assert db.session.scalar(sa.select(sa.func.count()).where(Reaction.message_id == message["id"])) == 0
    assert db.session.scalar(sa.select(sa.func.count()).where(Mention.message_id == message["id"])) == 0
    assert told(recorder) == [
        ("to_room", "general", "message_updated", SID),
        ("to_room", "general", "message_deleted", SID),
    ]
    refused("not_found", messages.delete_message, ann, message["id"])


def test_published_deletion_payloads(recorder, ann, bob):
    message = dm(ann, bob, "oops")
    recorder.clear()
    deleted = messages.delete_message(ann, message["id"], actor_sid=SID)
    assert payloads(recorder, "message_updated") == [deleted]
    assert payloads(recorder, "message_deleted") == [{"id": message["id"], "room": None}]
    assert told(recorder) == [
        ("to_users", sorted([ann.id, bob.id]), "message_updated", SID),
        ("to_users", sorted([ann.id, bob.id]), "message_deleted", SID),
    ]


def test_only_the_sender_may_delete(recorder, ann, bob):
    message = post(ann, "mine")
    recorder.clear()
    refused("forbidden", messages.delete_message, bob, message["id"])
    refused("not_found", messages.delete_message, bob, message["id"] + 1000)
    assert stored(message["id"]) == message
    assert recorder.published == []


# -- react ---------------------------------------------------------------------------------


def test_reactions_are_listed_per_emoji_in_order_of_first_use_with_their_users(recorder, ann, bob, cat):
    message = post(ann, "react to me")
    revs = [message["rev"]]
    for user, emoji in [(bob, "👍"), (ann, "🎉"), (ann, "👍"), (cat, "🎉"), (cat, "+1")]:
        revs.append(messages.react(user, message["id"], emoji, True)["rev"])
    assert revs == sorted(set(revs))
    assert stored(message["id"])["reactions"] == [
        {"emoji": "👍", "count": 2, "users": ["bob", "ann"]},
        {"emoji": "🎉", "count": 2, "users": ["ann", "cat"]},
        {"emoji": "+1", "count": 1, "users": ["cat"]},
    ]

    recorder.clear()
    taken_back = messages.react(bob, message["id"], "👍", False, actor_sid=SID)
    assert taken_back["rev"] > revs[-1]
    # An emoji's place is that of its earliest reaction still there.
    assert taken_back["reactions"] == [
        {"emoji": "🎉", "count": 2, "users": ["ann", "cat"]},
        {"emoji": "👍", "count": 1, "users": ["ann"]},
        {"emoji": "+1", "count": 1, "users": ["cat"]},
    ]
    assert told(recorder) == [("to_room", "general", "message_updated", SID)]
    messages.react(cat, message["id"], "+1", False)
    assert [r["emoji"] for r in stored(message["id"])["reactions"]] == ["🎉", "👍"]


def test_the_same_reaction_twice_changes_nothing_and_tells_no_one(recorder, ann, bob):
    message = post(ann, "once")
    first = messages.react(bob, message["id"], "👍", True, actor_sid=SID)
    recorder.clear()
    again = messages.react(bob, message["id"], "👍", True, actor_sid=SID)
    assert again == first
    never = messages.react(bob, message["id"], "🎉", False, actor_sid=SID)
    assert never == first
    assert current_rev() == first["rev"]
    assert recorder.published == []


def test_twenty_different_emoji_then_conflict_but_existing_ones_still_count(recorder, ann, bob):
    message = post(ann, "popular")
    for n in range(20):
        messages.react(ann, message["id"], f"e{n}", True)
    rev = current_rev()
    recorder.clear()

    refused("conflict", messages.react, bob, message["id"], "e20", True)
    assert current_rev() == rev and recorder.published == []

    again = messages.react(bob, message["id"], "e7", True)
    assert again["reactions"][7] == {"emoji": "e7", "count": 2, "users": ["ann", "bob"]}
    assert len(again["reactions"]) == 20
    # Taking one back makes room for a new one.
    messages.react(ann, message["id"], "e0", False)
    assert [r["emoji"] for r in messages.react(bob, message["id"], "new", True)["reactions"]][-1] == "new"


def test_bad_emoji_are_refused_and_change_nothing(recorder, ann):
    message = post(ann, "hi")
    recorder.clear()
    for emoji, code in [
        ("", "invalid"),
        (" ", "invalid"),
        ("a b", "invalid"),
        ("👍\n", "invalid"),
        ("x\u00a0y", "invalid"),
        ("\t", "invalid"),
        ("a\x00", "invalid"),
        (None, "invalid"),
        (1, "invalid"),
        (["👍"], "invalid"),
        ("x" * 33, "too_large"),
    ]:
        refused(code, messages.react, ann, message["id"], emoji, True)
    assert stored(message["id"]) == message
    assert recorder.published == []


def test_emoji_of_1_and_32_characters_are_accepted_and_active_must_be_a_boolean(recorder, ann):
    message = post(ann, "hi")
    assert messages.react(ann, message["id"], "x", True)["reactions"][0]["emoji"] == "x"
    assert messages.react(ann, message["id"], "y" * 32, True)["reactions"][1]["emoji"] == "y" * 32
    for active in (None, "true", 1):
        refused("invalid", messages.react, ann, message["id"], "z", active)


def test_reactions_on_messages_one_may_not_see_are_not_found(recorder, ann, bob, cat):
    joined(ann, "secret", private=True)
    secret = post(ann, "members only", room="secret")
    between = dm(ann, bob, "just us")
    refused("not_found", messages.react, bob, secret["id"], "👀", True)
    refused("not_found", messages.react, cat, between["id"], "👀", True)
    refused("not_found", messages.react, cat, between["id"] + 1000, "👀", True)
    assert stored(secret["id"])["reactions"] == [] and stored(between["id"])["reactions"] == []


# -- reply_to ------------------------------------------------------------------------------


def test_reply_to_names_a_message_of_the_same_room_or_dm_pair(recorder, ann, bob, cat):
    joined(ann, "dev")
    in_general = post(bob, "question")
    in_dev = post(ann, "elsewhere", room="dev")
    ann_bob = dm(ann, bob, "psst")
    bob_cat = dm(bob, cat, "other pair")

    assert post(ann, "answer", reply_to=in_general["id"])["reply_to"] == in_general["id"]
    assert dm(bob, ann, "psst back", reply_to=ann_bob["id"])["reply_to"] == ann_bob["id"]
    count = db.session.scalar(sa.select(sa.func.count(Message.id)))

    for action, args, target in [
        (post, (ann, "wrong room"), in_dev["id"]),
        (post, (ann, "a dm"), ann_bob["id"]),
        (post, (ann, "unknown"), bob_cat["id"] + 1000),
        (dm, (ann, bob, "other pair"), bob_cat["id"]),
        (dm, (ann, bob, "a room message"), in_general["id"]),
    ]:
        refused("not_found", action, *args, reply_to=target)
    for target in ("1", -1, 1.5, True):
        refused("invalid", post, ann, "bad", reply_to=target)
    assert db.session.scalar(sa.select(sa.func.count(Message.id))) == count


def test_reply_to_a_deleted_message_is_not_found(recorder, ann):
    gone = post(ann, "gone")
    messages.delete_message(ann, gone["id"])
    refused("not_found", post, ann, "answer", reply_to=gone["id"])


# -- mentions ------------------------------------------------------------------------------


@pytest.fixture
def mentionable(recorder):
    """Users whose names overlap: eli, elisa, eli.smith, Dana, and one of 32 characters."""
    return {name: register(name) for name in ["eli", "elisa", "eli.smith", "Dana", "ann", "z" * 32]}


MENTION_EXAMPLES = [
    ("@eli hello", ["eli"]),
    ("hello @eli", ["eli"]),
    ("(@eli)", ["eli"]),
    ("hi,@eli!", ["eli"]),
    ("@eli.", ["eli"]),
    ("@eli, look", ["eli"]),
    ("@eli-", ["eli"]),
    ("@eli_", ["eli"]),
    ("@eli?", ["eli"]),
    ("@@eli", ["eli"]),
    ("x@eli", []),
    ("9@eli", []),
    ("_@eli", []),
    (".@eli", []),
    ("-@eli", []),
    ("é@eli", []),
    ("mail ann@eli.com", []),
    ("@elis", []),
    ("@eli2", []),
    ("@eliñ", []),
    ("@elisa", ["elisa"]),
    ("@ELISA", ["elisa"]),
    ("@eli.smith", ["eli.smith"]),
    ("@eli.smithy", ["eli"]),
    ("@eli.smith.", ["eli.smith"]),
    ("@dana", ["Dana"]),
    ("@DANA and @dana", ["Dana"]),
    ("@elisa @eli @elisa @Eli", ["elisa", "eli"]),
    ("@nobody @el @", []),
    ("@" + "z" * 32 + "!", ["z" * 32]),
    ("@" + "z" * 33, []),
    ("@ann: @eli", ["ann", "eli"]),
]


@both_databases
def test_mentions_follow_the_rule(mentionable):
    writer = register("writer")
    for body, mentioned in MENTION_EXAMPLES:
        message = post(writer, body)
        assert (body, message["mentions"]) == (body, mentioned)
        assert (body, stored(message["id"])["mentions"]) == (body, mentioned)


def test_mention_is_published_to_mentioned_members_only_never_the_sender(recorder, ann, bob, cat):
    joined(ann, "dev")
    joined(bob, "dev")
    recorder.clear()
    message = post(ann, "@cat @bob @ann look", room="dev", actor_sid=SID)
    assert message["mentions"] == ["cat", "bob", "ann"]
    assert told(recorder) == [
        ("to_room", "dev", "message", SID),
        ("to_users", [bob.id], "mention", None),
    ]
    dm(ann, bob, "@bob in a dm")
    assert recorder.events("mention") == []


def test_mention_payload_is_the_message(recorder, ann, bob):
    message = post(ann, "@bob hi")
    assert payloads(recorder, "mention") == [{"message": message}]


@both_databases
def test_an_edit_recomputes_mentions_and_tells_only_the_newly_mentioned(recorder, ann, bob, cat):
    eli = register("eli")
    message = post(ann, "@bob first")
    recorder.clear()

    edited = messages.edit_message(ann, message["id"], "@eli @bob @cat again", actor_sid=SID)

    assert edited["mentions"] == ["eli", "bob", "cat"]
    assert stored(message["id"])["mentions"] == ["eli", "bob", "cat"]
    assert told(recorder) == [
        ("to_room", "general", "message_updated", SID),
        ("to_users", sorted([eli.id, cat.id]), "mention", None),
    ]
    fewer = messages.edit_message(ann, message["id"], "just @cat")
    assert fewer["mentions"] == ["cat"]
    assert recorder.events("mention") == []


@both_databases
def test_a_user_named_again_after_an_edit_dropped_them_is_not_told_twice(recorder, ann, bob):
    message = post(ann, "@bob first")
    assert payloads(recorder, "mention") == [{"message": message}]
    recorder.clear()

    dropped = messages.edit_message(ann, message["id"], "nobody now")
    assert dropped["mentions"] == []
    assert messages.mention_counts(bob.id) == {}
    again = messages.edit_message(ann, message["id"], "and @bob again")

    assert again["mentions"] == ["bob"]
    assert stored(message["id"])["mentions"] == ["bob"]
    assert recorder.events("mention") == []
    assert messages.mention_counts(bob.id) == {"general": 1}


# -- rev and sync after a rev ----------------------------------------------------------------


@both_databases
def test_one_rev_counter_advances_on_every_change_and_sync_after_any_rev_is_exact(recorder, ann, bob, admin):
    latest: dict[int, int] = {}  # message id -> rev of its latest change
    revs: list[int] = []

    def changed(message: dict) -> None:
        revs.append(message["rev"])
        latest[message["id"]] = message["rev"]

    m1 = post(ann, "one")
    changed(m1)
    m2 = post(bob, "two")
    changed(m2)
    changed(dm(ann, bob, "three"))
    changed(messages.edit_message(ann, m1["id"], "one, edited"))
    changed(messages.react(ann, m2["id"], "👍", True))
    m4 = post(bob, "four")
    changed(m4)
    changed(messages.react(ann, m2["id"], "👍", False))
    changed(messages.delete_message(ann, m1["id"]))
    changed(moderation.delete_message(admin.id, m4["id"]))
    assert revs == sorted(revs) and len(set(revs)) == len(revs)

    for after in range(0, revs[-1] + 1):
        page, has_more, rev = messages.sync_changes(ann, after)
        expected = sorted((r, i) for i, r in latest.items() if r > after)
        assert [(m["rev"], m["id"]) for m in page] == expected
        assert has_more is False
        assert rev == (expected[-1][0] if expected else after)
        for message in page:
            assert message == stored(message["id"])


@both_databases
def test_sync_changes_returns_at_most_500_with_has_more(recorder, ann, bob):
    general = rooms.find_room("general")
    first = current_rev() + 1
    rows = [
        {
            "sender_id": bob.id,
            "room_id": general.id,
            "body": f"m{i}",
            "created_at": utcnow(),
            "deleted": False,
            "rev": first + i,
        }
        for i in range(505)
    ]
    db.session.execute(sa.insert(Message), rows)
    db.session.commit()
    earliest = db.session.scalar(sa.select(Message.id).where(Message.rev == first))
    edited = messages.edit_message(bob, earliest, "moved to the end")

    page, has_more, rev = messages.sync_changes(ann, 0)
    assert (len(page), has_more, rev) == (500, True, page[-1]["rev"])
    assert [m["rev"] for m in page] == list(range(first + 1, first + 501))
    page, has_more, rev = messages.sync_changes(ann, rev)
    assert [m["rev"] for m in page] == [first + 501, first + 502, first + 503, first + 504, edited["rev"]]
    assert (has_more, rev) == (False, edited["rev"])
    assert messages.sync_changes(ann, rev) == ([], False, rev)


@both_databases
def test_sync_changes_shows_only_what_the_user_may_see_now(recorder, ann, bob, cat):
    joined(ann, "dev")
    joined(bob, "dev")
    joined(bob, "secret", private=True)
    visible = [post(bob, "general"), post(bob, "dev", room="dev"), dm(bob, ann, "to ann"), dm(ann, cat, "from ann")]
    post(bob, "private", room="secret")
    dm(bob, cat, "not ann's")

    page, _, _ = messages.sync_changes(ann, 0)
    assert [m["id"] for m in page] == [m["id"] for m in visible]

    rooms.leave_room(ann.id, "dev")
    page, _, _ = messages.sync_changes(ann, 0)
    assert [m["body"] for m in page] == ["general", "to ann", "from ann"]

    rooms.invite(bob.id, "secret", "ann")
    page, _, _ = messages.sync_changes(ann, 0)
    assert [m["body"] for m in page] == ["general", "to ann", "from ann", "private"]


CHANGES = {
    "edit": lambda user, message_id: messages.edit_message(user, message_id, "edited here"),
    "react": lambda user, message_id: messages.react(user, message_id, "👍", True),
    "delete": lambda user, message_id: messages.delete_message(user, message_id),
}


class ChangeThread(threading.Thread):
    """One change to a message, by the user with ``user_id``, in its own thread and app context."""

    def __init__(self, app, change: str, user_id: int, message_id: int) -> None:
        super().__init__(daemon=True)
        self.app, self.change, self.user_id, self.message_id = app, change, user_id, message_id
        self.message: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.app.app_context():
            try:
                self.message = CHANGES[self.change](db.session.get(User, self.user_id), self.message_id)
            except BaseException as error:  # handed to the test thread to assert on
                self.error = error
            finally:
                db.session.remove()

    def result(self) -> dict:
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "the change never finished"
        assert self.error is None, self.error
        assert self.message is not None
        return self.message


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_waits_for_an_earlier_uncommitted_rev_so_sync_after_rev_never_skips_it(
    app, recorder, ann, database_url, change
):
    target = post(ann, "target")
    elsewhere = post(ann, "changed by another process")
    db.session.rollback()
    with psycopg.connect(libpq(database_url)) as other_process:
        # Another server process changes a message under the lock and has not committed yet.
        other_process.execute("SELECT pg_advisory_xact_lock(%s)", (MESSAGE_LOCK_KEY,))
        earlier_rev = other_process.execute(
            "UPDATE messages SET body = 'edited elsewhere', rev = (SELECT MAX(rev) + 1 FROM messages)"
            " WHERE id = %s RETURNING rev",
            (elsewhere["id"],),
        ).fetchone()[0]
        thread = ChangeThread(app, change, ann.id, target["id"])
        thread.start()
        wait_for_lock_waiter(database_url)
        db.session.rollback()
        # No later rev is visible while the earlier one is uncommitted: a client cannot move past it.
        assert messages.sync_changes(ann, elsewhere["rev"]) == ([], False, elsewhere["rev"])
        assert thread.is_alive()
        other_process.commit()
    changed = thread.result()
    assert changed["rev"] > earlier_rev
    db.session.rollback()
    page, _, _ = messages.sync_changes(ann, elsewhere["rev"])
    assert [(m["id"], m["rev"]) for m in page] == [(elsewhere["id"], earlier_rev), (target["id"], changed["rev"])]


def test_sync_changes_refuses_a_bad_rev(recorder, ann):
    for after_rev in [-1, None, "0", 1.5, True, [0], 2**31]:
        refused("invalid", messages.sync_changes, ann, after_rev)


# -- the writer's fast path ----------------------------------------------------------------


@both_databases
def test_the_posted_payload_equals_the_stored_message(recorder, ann, bob):
    question = post(bob, "question")
    posted = messages.post_room_message(ann, "general", " @bob answer @ANN ", "cid-1", reply_to=question["id"]).message
    assert posted["mentions"] == ["bob", "ann"] and posted["reply_to"] == question["id"]
    assert posted == stored(posted["id"])
    direct = dm(ann, bob, "@bob direct", client_id="cid-2", reply_to=None)
    assert direct == stored(direct["id"])


# -- DM list and read markers, mention counts ----------------------------------------------


@both_databases
def test_direct_conversations_most_recent_first_with_unread_counts(recorder, ann, bob, cat):
    to_ann = dm(bob, ann, "one")
    dm(bob, ann, "two")
    dm(ann, bob, "mine are never unread")
    dm(cat, ann, "from cat")
    latest = dm(bob, ann, "three")
    deleted = dm(bob, ann, "deleted")
    messages.delete_message(bob, deleted["id"])
    db.session.expire_all()

    listed = messages.direct_conversations(ann.id)
    assert [(c["user"]["username"], c["unread"], c["last"]["id"]) for c in listed] == [
        ("bob", 3, deleted["id"]),
        ("cat", 1, listed[1]["last"]["id"]),
    ]
    assert listed[0]["last"] == stored(deleted["id"])
    assert listed[0]["user"] == bob.to_dict()
    assert [(c["user"]["username"], c["unread"]) for c in messages.direct_conversations(bob.id)] == [("ann", 1)]
    assert messages.direct_conversations(register("nobody").id) == []

    assert messages.mark_dm_read(ann.id, bob, latest["id"]) == latest["id"]
    assert [c["unread"] for c in messages.direct_conversations(ann.id)] == [0, 1]
    # Never back.
    assert messages.mark_dm_read(ann.id, bob, to_ann["id"]) == latest["id"]
    assert [c["unread"] for c in messages.direct_conversations(ann.id)] == [0, 1]

    # A conversation with oneself is listed with oneself, never unread.
    to_self = dm(ann, ann, "note to self")
    assert messages.direct_conversations(ann.id)[0] == {"user": ann.to_dict(), "unread": 0, "last": to_self}

    newer = dm(cat, ann, "cat again")
    assert [(c["user"]["username"], c["unread"]) for c in messages.direct_conversations(ann.id)] == [
        ("cat", 2),
        ("ann", 0),
        ("bob", 0),
    ]
    assert newer["id"] > latest["id"]


def test_dm_read_marker_moves_only_to_a_message_of_that_conversation(recorder, ann, bob, cat):
    other_pair = dm(bob, cat, "not yours")
    room_message = post(bob, "room")
    for message_id in (other_pair["id"], room_message["id"], room_message["id"] + 1000):
        refused("not_found", messages.mark_dm_read, ann.id, bob, message_id)
    refused("invalid", messages.mark_dm_read, ann.id, bob, "1")


@both_databases
def test_mention_counts_per_room_drop_as_the_read_marker_passes(recorder, ann, bob):
    joined(ann, "dev")
    joined(bob, "dev")
    first = post(bob, "@ann one")
    post(bob, "no mention")
    second = post(bob, "@ann two")
    post(bob, "@ann in dev", room="dev")
    post(ann, "talking to myself, @ann")
    gone = post(bob, "@ann deleted")
    messages.delete_message(bob, gone["id"])

    assert messages.mention_counts(ann.id) == {"general": 2, "dev": 1}
    assert messages.mention_counts(bob.id) == {}
    rooms.mark_read(ann.id, "general", first["id"])
    assert messages.mention_counts(ann.id) == {"general": 1, "dev": 1}
    rooms.mark_read(ann.id, "general", second["id"])
    assert messages.mention_counts(ann.id) == {"dev": 1}


@both_databases
def test_member_rooms_count_members_unread_and_mentions_as_the_separate_queries_do(recorder, ann, bob, cat):
    joined(ann, "dev")
    joined(bob, "dev")
    joined(ann, "quiet")
    first = post(bob, "@ann one")
    post(bob, "no mention")
    post(bob, "@ann in dev", room="dev")
    post(ann, "talking to myself, @ann")
    gone = post(bob, "@ann deleted")
    messages.delete_message(bob, gone["id"])
    rooms.mark_read(ann.id, "general", first["id"])

    def summary(user_id):
        return [(r.name, r.members, r.unread, r.mentions) for r in rooms.member_rooms(user_id)]

    assert summary(ann.id) == [("dev", 2, 1, 1), ("general", 3, 1, 0), ("quiet", 1, 0, 0)]
    assert summary(bob.id) == [("dev", 2, 0, 0), ("general", 3, 1, 0)]
    for user in (ann, bob, cat):
        found = rooms.member_rooms(user.id)
        assert [r.name for r in found] == [r.name for r in rooms.rooms_of(user.id)]
        unread, mentions = rooms.unread_counts(user.id), messages.mention_counts(user.id)
        assert {r.name: r.unread for r in found if r.unread} == unread
        assert {r.name: r.mentions for r in found if r.mentions} == mentions
        members = rooms.member_counts(r.id for r in found)
        assert {r.id: r.members for r in found} == members


# -- private rooms, directory, invitations, topics -----------------------------------------


def test_joining_private_creates_a_room_only_the_caller_is_in(recorder, ann, bob):
    room, created = rooms.join_room(ann.id, "secret", private=True, topic=" plans ", actor_sid=SID)
    assert (room.name, room.private, room.topic, created) == ("secret", True, "plans", True)
    assert rooms.member_ids([room.id]) == {room.id: {ann.id}}
    assert told(recorder) == [
        ("join_user", (ann.id, "secret"), None, None),
        ("to_users", [ann.id], "room_joined", SID),
    ]

    refused("forbidden", rooms.join_room, bob.id, "secret")
    assert rooms.member_ids([room.id]) == {room.id: {ann.id}}
    assert recorder.published == []
    # A second join by the member changes nothing and tells no one.
    assert rooms.join_room(ann.id, "secret", private=True)[1] is False
    assert recorder.published == []


def test_joining_an_existing_room_ignores_private_and_topic(recorder, ann, bob):
    joined(ann, "dev", topic="ours")
    room, newly = rooms.join_room(bob.id, "dev", private=True, topic="mine")
    assert (room.private, room.topic, newly) == (False, "ours", True)
    refused("invalid", rooms.join_room, bob.id, "other", private="yes")
    refused("too_large", rooms.join_room, bob.id, "other", topic="t" * 251)
    assert rooms.find_room("other") is None


def test_room_joined_payload_is_the_room(recorder, ann):
    rooms.join_room(ann.id, "dev", actor_sid=SID)
    [published] = recorder.events("room_joined")
    assert published.data == {"room": {"name": "dev", "members": 1, "online": 0, "topic": "", "private": False}}


def test_private_history_is_for_members_only(recorder, ann, bob):
    joined(ann, "secret", private=True)
    message = post(ann, "hush", room="secret")
    assert messages.room_history("secret", user_id=ann.id) == ([message], False)
    refused("forbidden", messages.room_history, "secret", user_id=bob.id)
    # Public rooms stay readable by anyone signed in.
    joined(ann, "open")
    assert messages.room_history("open", user_id=bob.id) == ([], False)


@both_databases
def test_directory_lists_public_rooms_and_the_users_private_ones_filtered_by_substring(recorder, ann, bob):
    for name, private in [("secret", True), ("dev", False), ("dev_ops", False), ("devsecret", True)]:
        joined(ann, name, private=private)
    joined(bob, "bobs-den", private=True)

    def names(user, q=None):
        return [room.name for room in rooms.directory(user.id, q)]

    assert names(ann) == ["dev", "dev_ops", "devsecret", "general", "secret"]
    assert names(bob) == ["bobs-den", "dev", "dev_ops", "general"]
    assert names(ann, "SECRET") == ["devsecret", "secret"]
    assert names(ann, "dev") == ["dev", "dev_ops", "devsecret"]
    assert names(ann, "_") == ["dev_ops"]
    assert names(ann, "%") == []
    assert names(bob, "secret") == []
    assert names(ann, "") == names(ann)
    refused("invalid", rooms.directory, ann.id, 5)
    refused("too_large", rooms.directory, ann.id, "x" * 65)


def test_any_member_may_invite_and_the_invited_user_joins_on_every_socket(recorder, ann, bob, cat):
    joined(ann, "secret", private=True)
    recorder.clear()

    room, invited = rooms.invite(ann.id, "secret", "BOB")
    assert (room.name, invited) == ("secret", True)
    assert rooms.member_ids([room.id]) == {room.id: {ann.id, bob.id}}
    assert told(recorder) == [
        ("join_user", (bob.id, "secret"), None, None),
        ("to_users", [bob.id], "room_joined", None),
    ]
    # Invited, bob may invite too; an invitation of a member changes nothing.
    assert rooms.invite(bob.id, "secret", "cat")[1] is True
    recorder.clear()
    assert rooms.invite(bob.id, "secret", "ann")[1] is False
    assert recorder.published == []


def test_bad_invitations_change_nothing(recorder, ann, bob, cat):
    joined(ann, "secret", private=True)
    secret = rooms.find_room("secret")
    recorder.clear()
    refused("forbidden", rooms.invite, cat.id, "secret", "bob")
    refused("not_found", rooms.invite, ann.id, "secret", "nobody")
    refused("not_found", rooms.invite, ann.id, "nowhere", "bob")
    refused("invalid", rooms.invite, ann.id, "secret", 5)
    assert rooms.member_ids([secret.id]) == {secret.id: {ann.id}}
    assert recorder.published == []


def test_members_set_the_topic_and_the_room_is_told(recorder, ann, bob):
    joined(ann, "dev")
    recorder.clear()
    room = rooms.set_topic(ann.id, "dev", "  release on friday ")
    assert room.topic == "release on friday"
    [published] = recorder.events("room_updated")
    assert (published.method, published.target) == ("to_room", "dev")
    assert published.data["room"]["topic"] == "release on friday"
    assert published.data["room"]["name"] == "dev"
    recorder.clear()

    assert rooms.set_topic(ann.id, "dev", "t" * 250).topic == "t" * 250
    assert rooms.set_topic(ann.id, "dev", "").topic == ""
    recorder.clear()
    rooms.set_topic(ann.id, "dev", "")
    assert recorder.published == []


def test_bad_topics_change_nothing(recorder, ann, bob):
    joined(ann, "dev")
    rooms.set_topic(ann.id, "dev", "kept")
    recorder.clear()
    for user, topic, code in [
        (bob, "not a member", "forbidden"),
        (ann, "t" * 251, "too_large"),
        (ann, None, "invalid"),
        (ann, 5, "invalid"),
        (ann, "two\nlines", "invalid"),
    ]:
        refused(code, rooms.set_topic, user.id, "dev", topic)
    refused("not_found", rooms.set_topic, ann.id, "nowhere", "x")
    db.session.expire_all()
    assert rooms.find_room("dev").topic == "kept"
    assert recorder.published == []


def test_the_room_allowance_stops_creation_but_not_joining(recorder, ann, bob):
    joined(bob, "existing")
    asked = []

    def allowance_spent() -> None:
        asked.append(True)
        raise ServiceError("rate_limited", "no more rooms this hour")

    refused("rate_limited", rooms.join_room, ann.id, "brand-new", may_create=allowance_spent)
    assert rooms.find_room("brand-new") is None
    room, joined_now = rooms.join_room(ann.id, "existing", may_create=allowance_spent)
    assert (room.name, joined_now) == ("existing", True)
    assert asked == [True]


# -- moderation through the same paths -----------------------------------------------------


def test_admin_delete_takes_a_rev_is_audited_and_tells_the_room(recorder, ann, bob, admin):
    message = post(ann, "@bob spam")
    messages.react(bob, message["id"], "👎", True)
    recorder.clear()

    deleted = moderation.delete_message(admin.id, message["id"])

    assert deleted["deleted"] is True and deleted["rev"] == current_rev() > message["rev"]
    assert (deleted["body"], deleted["mentions"], deleted["reactions"]) == ("", [], [])
    assert stored(message["id"]) == deleted
    assert told(recorder) == [
        ("to_room", "general", "message_updated", None),
        ("to_room", "general", "message_deleted", None),
    ]
    entries = db.session.scalars(sa.select(AuditEntry)).all()
    assert [(e.action, e.target) for e in entries] == [("delete_message", str(message["id"]))]
    page, _, _ = messages.sync_changes(bob, message["rev"])
    assert [m["id"] for m in page] == [message["id"]]
    assert page[0]["deleted"] is True


def test_admin_delete_of_a_dm_tells_both_parties(recorder, ann, bob, admin):
    message = dm(ann, bob, "private")
    recorder.clear()
    moderation.delete_message(admin.id, message["id"])
    assert told(recorder) == [
        ("to_users", sorted([ann.id, bob.id]), "message_updated", None),
        ("to_users", sorted([ann.id, bob.id]), "message_deleted", None),
    ]


def test_ban_disconnects_every_socket_of_the_user(recorder, bob, admin):
    recorder.clear()
    moderation.ban_user(admin.id, "bob", "spam")
    assert recorder.published == [Published("disconnect_user", bob.id, "kicked", {"reason": "banned"})]


# -- the cost of a message -----------------------------------------------------------------


def statements_of(app, action) -> tuple[object, list[str]]:
    """Run ``action`` and return its result and every SQL statement the app's engine executed meanwhile."""
    with app.app_context():
        engine = db.engine
    executed: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _executemany):
        executed.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        return action(), executed
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@both_databases
def test_a_message_event_costs_a_fixed_small_number_of_sql_statements(app, make_user, socket_client, database_url):
    ann, _bob = make_user("ann"), make_user("bob")
    sio = socket_client(ann)
    sio.emit("message", {"room": "general", "body": "warm up", "client_id": "warm"}, callback=True)
    sio.get_received()

    plain, plain_sql = statements_of(
        app, lambda: sio.emit("message", {"room": "general", "body": "hello", "client_id": "c1"}, callback=True)
    )
    mention, mention_sql = statements_of(
        app, lambda: sio.emit("message", {"room": "general", "body": "@bob hi", "client_id": "c2"}, callback=True)
    )

    assert plain["ok"] is True and mention["ok"] is True
    assert mention["message"]["mentions"] == ["bob"]
    dialect = database_url.split(":", 1)[0]
    print(f"\n{dialect}: {len(plain_sql)} statements per message, {len(mention_sql)} with a mention")
    for statement in mention_sql:
        print("   ", " ".join(statement.split())[:160])
    # Measured: nothing before the ordered write (the user, the room and the membership come from the
    # worker's cache), then the write: a lock or BEGIN IMMEDIATE, one statement for ban, mute,
    # membership, the last rev and an earlier message with the client_id, the insert. A mention adds
    # the username lookup, the mentioned members (both before the write, on SQLite in a read
    # transaction) and its row.
    limits = {"sqlite": (3, 7), "postgresql+psycopg": (3, 6)}[dialect]
    assert len(plain_sql) <= limits[0] and len(mention_sql) <= limits[1]
    assert plain_sql[0] == "BEGIN IMMEDIATE" or plain_sql[0].startswith("SELECT pg_advisory_xact_lock")


@both_databases
def test_a_sockets_first_message_reads_nothing_before_the_write(app, make_user, socket_client, database_url):
    ann = make_user("ann")
    with app.app_context():
        hot_cache().clear()
    # Connecting read the user (the ban re-check) and the user's rooms: the worker keeps both.
    sio = socket_client(ann)
    first, first_sql = statements_of(
        app, lambda: sio.emit("message", {"room": "general", "body": "first", "client_id": "f1"}, callback=True)
    )
    assert first["ok"] is True, first
    dialect = database_url.split(":", 1)[0]
    assert len(first_sql) <= {"sqlite": 3, "postgresql+psycopg": 3}[dialect], first_sql
    assert first_sql[0] == "BEGIN IMMEDIATE" or first_sql[0].startswith("SELECT pg_advisory_xact_lock")
